"""File operations on a local folder or a pyarrow filesystem, shared by the store's readers
and writers: atomic text writes, reads, listings."""
from __future__ import annotations

import errno
import fnmatch
import uuid

import pyarrow.fs as pafs

from birdemb.store.layout import StoreError
from birdemb.store.location import Folder, as_folder, on_filesystem


def atomic_write_text(path: Folder, text: str) -> None:
    """Write under a hidden name, then move into place (atomic locally; one object copy on
    object stores). A failed write leaves no temporary behind and ends in one StoreError."""
    filesystem, target = on_filesystem(path)
    tmp = f"{target.rsplit('/', 1)[0]}/.{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        write_bytes(filesystem, tmp, text.encode("utf-8"))
        filesystem.move(tmp, target)
    except OSError as error:
        delete_quietly(filesystem, tmp)
        raise write_error(path, error) from None


def write_bytes(filesystem: pafs.FileSystem, target: str, data: bytes) -> None:
    with filesystem.open_output_stream(target) as stream:
        stream.write(data)


def write_error(path: Folder, error: OSError) -> StoreError:
    """One line for a write that failed; a full disk says how to resume."""
    if is_disk_full(error):
        return StoreError(
            f"{path}: disk full (no space left on device) while writing {path.name}; "
            "finished files are kept, free space and rerun to resume"
        )
    return StoreError(f"{path}: could not write {path.name} ({error}); finished files are kept, rerun to resume")


def is_disk_full(error: BaseException) -> bool:
    # pyarrow's IO errors carry the errno only in their text
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


def delete_quietly(filesystem: pafs.FileSystem, target: str) -> None:
    try:
        filesystem.delete_file(target)
    except OSError:
        pass


def move_aside(path: Folder, folder: Folder) -> Folder:
    """Move a file into `folder` (created if needed) under a name not taken yet; nothing is deleted."""
    make_dirs(folder)
    taken = set(file_names(folder, "*"))
    name, n = path.name, 1
    while name in taken:
        n += 1
        name = f"{path.name}.{n}"
    filesystem, source = on_filesystem(path)
    filesystem.move(source, on_filesystem(as_folder(folder) / name)[1])
    return as_folder(folder) / name


def read_text(path: Folder, errors: str = "strict") -> str | None:
    """The file's text, None when there is no such file; `errors="replace"` for logs whose
    last line may be cut inside a character."""
    filesystem, target = on_filesystem(path)
    if filesystem.get_file_info(target).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(target) as stream:
        return stream.read().decode("utf-8", errors=errors)


def make_dirs(directory: Folder) -> None:
    filesystem, target = on_filesystem(as_folder(directory))
    filesystem.create_dir(target, recursive=True)


def file_names(directory: Folder, pattern: str) -> list[str]:
    """Sorted names of the files in a folder that match a glob pattern."""
    filesystem, target = on_filesystem(as_folder(directory))
    if filesystem.get_file_info(target).type != pafs.FileType.Directory:
        return []
    entries = filesystem.get_file_info(pafs.FileSelector(target, recursive=False))
    return sorted(e.base_name for e in entries if e.type == pafs.FileType.File and fnmatch.fnmatchcase(e.base_name, pattern))


def subfolders(directory: Folder, pattern: str) -> list[str]:
    filesystem, target = on_filesystem(directory)
    entries = filesystem.get_file_info(pafs.FileSelector(target, recursive=False))
    return sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory and fnmatch.fnmatchcase(e.base_name, pattern))


def is_dir(directory: Folder) -> bool:
    filesystem, target = on_filesystem(directory)
    return filesystem.get_file_info(target).type == pafs.FileType.Directory

