"""Where a feature store lives: a local folder, or a URI that pyarrow's filesystems handle
(file://, s3://, gs://, hdfs://, ...), so the workers of a cluster can share one store.

Local folders stay `pathlib.Path`s everywhere (the long-standing API); a URI becomes a
`Location`, a folder on a pyarrow filesystem that joins with `/` like a Path does.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_uri(text) -> bool:
    return isinstance(text, str) and bool(_SCHEME.match(text))


@dataclass(frozen=True)
class Location:
    """A folder on a pyarrow filesystem: `path` as the filesystem names it, `uri` for people."""

    filesystem: pafs.FileSystem
    path: str
    uri: str

    @classmethod
    def from_uri(cls, uri: str) -> Location:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        return cls(filesystem, path.rstrip("/") or "/", uri.rstrip("/"))

    def __truediv__(self, name: str) -> Location:
        return Location(self.filesystem, f"{self.path.rstrip('/')}/{name}", f"{self.uri}/{name}")

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        return Location(self.filesystem, self.path.rstrip("/").rsplit("/", 1)[0] or "/", self.uri.rsplit("/", 1)[0])

    @property
    def is_local(self) -> bool:
        """On this machine's own filesystem (file:// URIs), where OS file locks work."""
        return isinstance(self.filesystem, pafs.LocalFileSystem)


Folder = Path | Location


def as_folder(where: str | Path | Location) -> Folder:
    """A URI becomes a Location; anything else stays the local Path it always was."""
    if isinstance(where, Location):
        return where
    return Location.from_uri(where) if is_uri(where) else Path(where)


def on_filesystem(folder: Folder) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for pyarrow's calls; local Paths use the local filesystem."""
    if isinstance(folder, Location):
        return folder.filesystem, folder.path
    return pafs.LocalFileSystem(), os.path.abspath(folder)


def local_path(folder: Folder) -> Path | None:
    """The folder as a local Path when it is on this machine, else None."""
    if isinstance(folder, Location):
        return Path(folder.path) if folder.is_local else None
    return Path(folder)
