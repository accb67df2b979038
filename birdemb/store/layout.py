"""The feature store: layout, schema, manifest, atomic resumable writes, and scans.

Layout (a contract): STORE/embeddings/model=<model>/dataset=<dataset>/*.parquet, one row per
(file, window). Beside the parts, in the same folder:
  _manifest.json   what produced the rows (model, weights hash, layout, labels, code version)
  _failures.jsonl  one line per file that could not be processed, with the reason
  _lock            held while an extraction writes, so two jobs never interleave
  _audio_roots.json  the --audio folders extractions read (store/sources.py)
  _quarantine/     parts (and manifests) `birdemb check --repair` set aside; never read
Each part also carries, in its Parquet key-value metadata, the manifest it was written under
(PART_MANIFEST_KEY) and a fingerprint of every audio file it holds (FINGERPRINTS_KEY), so a
lost manifest can be rebuilt and a changed audio file re-extracted (see docs/store.md).
Part files appear only complete (written under a hidden name, then renamed) and each holds
whole files only, so a killed job leaves nothing partial behind.

STORE may be a local folder or a URI that pyarrow's filesystems handle (file://, s3://,
gs://, hdfs://): every store function takes either (see birdemb.store.location). Object stores have
no atomic rename; there a part becomes visible by one copy of a complete object, which
readers never see half-written, and `_lock` is a best-effort lease instead of an OS lock.
"""
from __future__ import annotations

from pathlib import Path

from birdemb.errors import BirdembError
from birdemb.store.location import Folder, as_folder

MANIFEST = "_manifest.json"
FAILURES = "_failures.jsonl"
LOCK = "_lock"
PART_GLOB = "part-*.parquet"
QUARANTINE = "_quarantine"
PART_MANIFEST_KEY = b"birdemb.manifest"
FINGERPRINTS_KEY = b"birdemb.fingerprints"
TEMPORARY_GLOBS = (".part-*.tmp", f".{MANIFEST}.*.tmp", f".{FAILURES}.*.tmp")  # never complete files


class StoreError(BirdembError):
    """A store that is missing, locked, or written with other parameters."""


def partition_dir(store: str | Path, model: str, dataset: str) -> Folder:
    """The partition's folder: a Path for a local store, a Location for a URI."""
    return as_folder(store) / "embeddings" / f"model={model}" / f"dataset={dataset}"


def store_of(directory: Folder) -> str:
    """The store a partition folder belongs to (STORE/embeddings/model=*/dataset=*)."""
    folder = as_folder(directory)
    if isinstance(folder, Path):
        return str(folder.parent.parent.parent)
    return folder.uri.rsplit("/", 3)[0]


def check_hint(directory: Folder) -> str:
    """What to tell the user when a partition's files are damaged."""
    return f"run `birdemb check {store_of(directory)}`"
