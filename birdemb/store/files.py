"""File operations on a local folder or a pyarrow filesystem, shared by the store's readers
and writers: atomic text writes, reads, listings."""
from __future__ import annotations

import fnmatch
import uuid

import pyarrow.fs as pafs

from birdemb.store.location import Folder, as_folder, on_filesystem


def atomic_write_text(path: Folder, text: str) -> None:
    """Write under a hidden name, then move into place (atomic locally; one object copy on
    object stores)."""
    filesystem, target = on_filesystem(path)
    tmp = f"{target.rsplit('/', 1)[0]}/.{path.name}.{uuid.uuid4().hex}.tmp"
    with filesystem.open_output_stream(tmp) as stream:
        stream.write(text.encode("utf-8"))
    filesystem.move(tmp, target)


def read_text(path: Folder) -> str | None:
    filesystem, target = on_filesystem(path)
    if filesystem.get_file_info(target).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(target) as stream:
        return stream.read().decode("utf-8")


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

