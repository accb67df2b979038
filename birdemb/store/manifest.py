"""The partition manifest (_manifest.json): what produced the rows; rows are added to an
existing partition only with the same parameters. Every part carries a copy of the manifest
it was written under, so a lost manifest is rebuilt from the parts, and parts that disagree
with it (or with each other) are refused by name."""
from __future__ import annotations

import json

from birdemb.store.files import atomic_write_text, make_dirs, read_text
from birdemb.store.layout import MANIFEST, StoreError, check_hint
from birdemb.store.location import Folder, as_folder
from birdemb.store.parts import part_files, read_meta

SHOWN = 3  # part names listed in a message before "..."


def read_manifest(directory: Folder) -> dict | None:
    path = as_folder(directory) / MANIFEST
    try:
        text = read_text(path)
        if text is None:
            return None
        found = json.loads(text)
    except ValueError as error:  # not JSON, or cut inside a character
        raise StoreError(f"{path}: damaged manifest, not valid JSON ({error}); {check_hint(directory)}") from None
    if not isinstance(found, dict) or not isinstance(found.get("parameters"), dict):
        raise StoreError(f"{path}: damaged manifest, no `parameters`; {check_hint(directory)}")
    return found


def canonical(value) -> str:
    """One spelling per value, as JSON writes it (tuples become lists), for comparisons."""
    return json.dumps(value, sort_keys=True)


def part_manifests(directory: Folder) -> dict[str, dict | None]:
    """part name -> the manifest in its footer (None for parts older than part metadata)."""
    return {part.name: read_meta(part).manifest for part in part_files(directory)}


def manifest_from_parts(directory: Folder, manifests: dict[str, dict | None] | None = None) -> dict | None:
    """The manifest the parts were written under: None when there are no parts; a StoreError
    naming the parts when some carry none or when they disagree on the parameters."""
    manifests = part_manifests(directory) if manifests is None else manifests
    if not manifests:
        return None
    bare = sorted(name for name, found in manifests.items() if found is None)
    if bare:
        raise StoreError(
            f"{directory}: {MANIFEST} is missing and {_names(bare)} carry no parameters (written before parts "
            f"did), so rows cannot be added safely; {check_hint(directory)}"
        )
    groups = parameter_groups(manifests)
    if len(groups) > 1:
        raise StoreError(f"{directory}: parts written with different parameters: {describe_groups(groups)}; "
                         f"{check_hint(directory)}")
    return manifests[sorted(manifests)[0]]


def parameter_groups(manifests: dict[str, dict]) -> dict[str, list[str]]:
    """canonical parameters -> names of the parts written with them."""
    groups: dict[str, list[str]] = {}
    for name in sorted(manifests):
        groups.setdefault(canonical(manifests[name]["parameters"]), []).append(name)
    return groups


def describe_groups(groups: dict[str, list[str]]) -> str:
    """"a, b vs c (layout.window_s: 5.0 vs 3.0)": the first group, then how each other differs."""
    keys = list(groups)
    first = json.loads(keys[0])
    others = [f"{_names(groups[key])} ({differences(first, json.loads(key))})" for key in keys[1:]]
    return " vs ".join([_names(groups[keys[0]]), *others])


def differences(old: dict, new: dict, template: str = "{key}: {old!r} vs {new!r}") -> str:
    """The parameters that differ, nested ones by dotted name (layout.window_s)."""
    a, b = _flat(old), _flat(new)
    return "; ".join(
        template.format(key=key, old=a.get(key), new=b.get(key))
        for key in sorted(set(a) | set(b))
        if canonical(a.get(key)) != canonical(b.get(key))
    )


def _flat(value: dict, prefix: str = "") -> dict:
    flat = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            flat.update(_flat(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def check_or_write_manifest(directory: Folder, manifest: dict) -> dict:
    """Write the manifest for a new partition, or refuse one written with other parameters;
    the partition's manifest (rebuilt from its parts when _manifest.json is lost) is returned."""
    make_dirs(directory)
    manifests = part_manifests(directory)
    existing = read_manifest(directory)
    if existing is None:
        existing = manifest_from_parts(directory, manifests) or manifest
        atomic_write_text(as_folder(directory) / MANIFEST, json.dumps(existing, indent=1))
    old, new = existing["parameters"], manifest["parameters"]
    if canonical(old) != canonical(new):
        which = differences(old, new, "{key}: stored {old!r}, asked {new!r}")
        raise StoreError(f"{directory} was written with other parameters ({which}); use another `dataset` or `store`")
    strays = sorted(name for name, found in manifests.items()
                    if found is not None and canonical(found["parameters"]) != canonical(old))
    if strays:
        raise StoreError(f"{directory}: {_names(strays)} written with other parameters than {MANIFEST}; "
                         f"{check_hint(directory)}")
    return existing


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
