"""The feature store: layout, schema, manifest, atomic resumable writes, scans and joins.

`from birdemb import store` gives the public functions below; the modules behind them each
do one job (layout, files, parts, manifest, lock, writer, spill, sources, reader, joins, location, check,
repair).
"""
from birdemb.store.joins import join
from birdemb.store.layout import FAILURES, LOCK, MANIFEST, PART_GLOB, QUARANTINE, StoreError, partition_dir
from birdemb.store.location import Folder, Location, as_folder, is_uri, local_path, on_filesystem
from birdemb.store.lock import LeaseLock, PartitionLock
from birdemb.store.manifest import check_or_write_manifest, read_manifest
from birdemb.store.parts import Stored, column_matrix, fingerprint, part_files, read_meta, read_part, stored_index
from birdemb.store.reader import collect, failure_log, failures, info, manifest, partitions, scan, stored_files
from birdemb.store.sources import AUDIO_ROOTS, audio_roots, record_audio_root
from birdemb.store.spill import SPILL_ROWS, Spill, Spilled, SpillPart, SpillTarget
from birdemb.store.writer import FileRows, PartWriter, record_failure, remove_stale_temporaries, rows_to_table, schema

__all__ = [
    "AUDIO_ROOTS", "FAILURES", "LOCK", "MANIFEST", "PART_GLOB", "QUARANTINE", "SPILL_ROWS", "FileRows", "Folder", "LeaseLock",
    "Location", "PartWriter", "PartitionLock", "Spill", "SpillPart", "SpillTarget", "Spilled", "StoreError", "Stored",
    "as_folder", "audio_roots", "column_matrix", "partition_dir", "check_or_write_manifest", "collect", "failure_log", "failures", "fingerprint", "info",
    "is_uri", "join", "local_path", "manifest", "on_filesystem", "part_files", "partitions", "read_manifest",
    "read_meta", "read_part", "record_audio_root", "record_failure", "remove_stale_temporaries", "rows_to_table", "scan", "schema",
    "stored_files", "stored_index",
]
