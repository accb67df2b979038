"""The partition manifest (_manifest.json): what produced the rows; rows are added to an
existing partition only with the same parameters."""
from __future__ import annotations

import json

from birdemb.store.files import atomic_write_text, make_dirs, read_text
from birdemb.store.layout import MANIFEST, StoreError
from birdemb.store.location import Folder, as_folder


def read_manifest(directory: Folder) -> dict | None:
    text = read_text(as_folder(directory) / MANIFEST)
    return None if text is None else json.loads(text)


def check_or_write_manifest(directory: Folder, manifest: dict) -> None:
    """Write the manifest for a new partition, or refuse one written with other parameters."""
    make_dirs(directory)
    existing = read_manifest(directory)
    if existing is None:
        atomic_write_text(as_folder(directory) / MANIFEST, json.dumps(manifest, indent=1))
        return
    old, new = existing["parameters"], manifest["parameters"]
    differences = [
        f"{key}: stored {old.get(key)!r}, asked {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if differences:
        raise StoreError(
            f"{directory} was written with other parameters ({'; '.join(differences)}); "
            "use another `dataset` or `store`"
        )
