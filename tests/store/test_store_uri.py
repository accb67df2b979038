"""Stores given as URIs: a file:// store holds what a local folder holds, and a filesystem
with neither OS locks, rename-in-place nor append (an object store's limits, played by an
in-memory filesystem) still gets complete parts, a failure log and a lease lock."""
from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pyarrow.fs as pafs
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from birdemb import store
from birdemb.extract.job import ExtractConfig, extract
from birdemb.store import Location
from birdemb.store.files import read_text


def config(audio, where, **overrides) -> ExtractConfig:
    values = dict(audio=str(audio), store=where, model="birdnet", dataset="train", workers=1, progress=False, flush_files=2)
    values.update(overrides)
    return ExtractConfig(**values)


def sorted_rows(where):
    return store.scan(where, "birdnet", "train").sort("file", "window").collect()


def assert_same_frames(a, b):
    assert a.columns == b.columns
    plain = [c for c in a.columns if c not in ("embedding", "logits")]
    assert a.select(plain).equals(b.select(plain))
    for column in ("embedding", "logits"):
        np.testing.assert_allclose(np.stack(a[column].to_numpy()), np.stack(b[column].to_numpy()), atol=1e-6)


class NoAppendHandler(pafs.FSSpecHandler):
    """Like S3 or GCS: appending to an object is not possible."""

    def open_append_stream(self, path, metadata):
        raise NotImplementedError("object stores cannot append")


def object_store_like() -> Location:
    root = f"/store-{uuid.uuid4().hex[:8]}"  # fsspec's memory filesystem is shared by the process
    return Location(pafs.PyFileSystem(NoAppendHandler(MemoryFileSystem())), root, f"memory://{root}")


def test_a_file_uri_store_holds_what_a_local_folder_holds_and_resumes(small_corpus, tmp_path):
    local, uri = tmp_path / "local", (tmp_path / "remote").as_uri()
    extract(config(small_corpus, str(local)))
    first = extract(config(small_corpus, uri))
    assert first.partition == f"{uri}/embeddings/model=birdnet/dataset=train"
    assert_same_frames(sorted_rows(local), sorted_rows(uri))
    assert set(sorted_rows(uri)["model"]) == {"birdnet"} and set(sorted_rows(uri)["dataset"]) == {"train"}
    [a], [b] = store.info(local), store.info(uri)
    assert {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}
    assert store.manifest(uri, "birdnet", "train")["parameters"] == store.manifest(local, "birdnet", "train")["parameters"]
    again = extract(config(small_corpus, uri))
    assert (again.succeeded, again.already_stored) == (0, 4)


def test_a_file_uri_partition_is_locked_like_a_local_one(tmp_path):
    directory = store.partition_dir((tmp_path / "s").as_uri(), "birdnet", "train")
    with store.PartitionLock(directory):
        with pytest.raises(store.StoreError, match="another job"):
            store.PartitionLock(directory)
    store.PartitionLock(directory).release()  # free again once released


def test_a_store_without_rename_locks_or_append_gets_the_same_rows_and_failure_log(small_corpus, tmp_path):
    (small_corpus / "norcar" / "empty.wav").write_bytes(b"")
    remote = object_store_like()
    extract(config(small_corpus, remote))
    extract(config(small_corpus, str(tmp_path / "local")))
    assert_same_frames(sorted_rows(tmp_path / "local"), sorted_rows(remote))
    rerun = extract(config(small_corpus, remote))  # the bad file is tried, and logged, again
    assert (rerun.succeeded, rerun.failed, rerun.already_stored) == (0, 1, 4)
    directory = store.partition_dir(remote, "birdnet", "train")
    log = read_text(directory / store.FAILURES).splitlines()
    assert [json.loads(line)["file"] for line in log] == ["norcar/empty.wav"] * 2
    assert list(store.failures(directory)) == ["norcar/empty.wav"]
    assert read_text(directory / store.LOCK) is None  # the lease is gone with the job
    assert store.info(remote)[0]["files"] == 4


def test_a_lease_lock_refuses_a_second_job_and_takes_over_an_expired_lease(monkeypatch):
    directory = store.partition_dir(object_store_like(), "birdnet", "train")
    held = store.PartitionLock(directory)
    with pytest.raises(store.StoreError, match="lease held"):
        store.PartitionLock(directory)
    held._lease._stop.set()  # the holder is killed: its lease is no longer renewed
    held._lease._thread.join()
    monkeypatch.setattr(store.LeaseLock, "EXPIRE_S", 0.5)
    time.sleep(0.6)
    taken = store.PartitionLock(directory)
    assert json.loads(read_text(directory / store.LOCK))["token"] == taken._lease.token
    taken.release()
