"""The Ray engine against the local engine: same rows on the same audio, resumption, a worker
killed mid-run, and the failure log. One local Ray instance (2 CPUs) serves the module."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import ray

from birdemb import store
from birdemb.backbones import BackboneError, load_backbone
from birdemb.cli import main
from birdemb.extract.discovery import discover
from birdemb.extract.engines import ray_engine
from birdemb.extract.job import ExtractConfig, extract, make_layout, make_manifest
from tests.helpers.audio import write_audio

GOOD = [f"sp{i % 3}/f{i:02d}.wav" for i in range(10)]
BAD = ["sp0/empty.wav", "sp1/text.mp3"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "audio"
    for i, name in enumerate(GOOD):
        write_audio(root / name, 4.0 + (i % 4) * 2.7, (48000, 44100, 32000)[i % 3], seed=i, freq=1500 + 250 * i)
    (root / BAD[0]).write_bytes(b"")
    (root / BAD[1]).write_text("not audio " * 100)
    return root


@pytest.fixture(scope="module")
def reference(audio, tmp_path_factory):
    """The local engine's store on the same audio: rows and failure log."""
    root = tmp_path_factory.mktemp("local") / "store"
    extract(config(audio, root, engine="local"))
    return rows(root), store.failures(store.partition_dir(root, "birdnet", "train"))


def config(audio, root, **overrides) -> ExtractConfig:
    values = dict(audio=str(audio), store=str(root), model="birdnet", dataset="train", workers=2,
                  progress=False, engine="ray", flush_files=2)
    values.update(overrides)
    return ExtractConfig(**values)


def rows(root) -> pl.DataFrame:
    return store.scan(root, "birdnet", "train").sort("file", "window").collect()


def assert_same_rows(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert b.select("file", "window").is_unique().all()
    keys = ["file", "window", "species", "start_s", "end_s", "file_duration_s"]
    assert a.select(keys).equals(b.select(keys))
    for column in ("embedding", "logits"):
        np.testing.assert_allclose(np.stack(a[column].to_numpy()), np.stack(b[column].to_numpy()), atol=1e-6)


def test_ray_store_equals_the_local_store_and_logs_the_same_failures(audio, reference, tmp_path):
    root = tmp_path / "store"
    summary = extract(config(audio, root))
    expected_rows, expected_failures = reference
    assert (summary.succeeded, summary.failed) == (len(GOOD), len(BAD))
    assert_same_rows(expected_rows, rows(root))
    failed = store.failures(store.partition_dir(root, "birdnet", "train"))
    assert set(failed) == set(expected_failures) == set(BAD)
    assert all(file.split("/")[-1] in error for file, error in failed.items())


def test_a_resumed_ray_run_into_a_uri_store_equals_the_local_run(audio, reference, tmp_path, capsys):
    """First half of the files, then all of them through the command line, into a file:// store."""
    partial = tmp_path / "audio"
    for name in GOOD[:5]:
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        (partial / name).symlink_to(audio / name)
    uri = (tmp_path / "store").as_uri()
    first = extract(config(partial, uri))
    assert (first.succeeded, first.already_stored) == (5, 0)
    code = main(["extract", "--model", "birdnet", "--audio", str(audio), "--store", uri, "--dataset", "train",
                 "--workers", "2", "--files-per-part", "2", "--engine", "ray", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{len(GOOD) - 5} files stored, {len(BAD)} failed, 5 already stored" in out
    assert_same_rows(reference[0], rows(uri))
    [summary] = store.info(uri)
    assert (summary["files"], summary["windows"], summary["failures"]) == (len(GOOD), reference[0].height, len(BAD))


def test_a_killed_worker_loses_only_its_file_in_flight_and_a_rerun_redoes_it(audio, reference, tmp_path, monkeypatch):
    good_only = tmp_path / "audio"
    for name in GOOD:
        (good_only / name).parent.mkdir(parents=True, exist_ok=True)
        (good_only / name).symlink_to(audio / name)
    submitted = []
    submit = ray_engine._submit

    def submit_then_kill_the_seventh(worker, item):
        ref = submit(worker, item)
        submitted.append(item.file)
        if len(submitted) == 7:  # after the first results: the workers are up and busy
            ray.kill(worker, no_restart=True)
        return ref

    monkeypatch.setattr(ray_engine, "_submit", submit_then_kill_the_seventh)
    root = tmp_path / "store"
    killed = extract(config(good_only, root))
    assert (killed.succeeded, killed.failed) == (len(GOOD) - 1, 1)
    [(lost, error)] = killed.failures.items()
    assert "worker died" in error and lost.split("/")[-1] in error
    # the file queued behind the lost one (if it had not finished) was submitted again, not lost
    assert set(submitted) == set(GOOD) and len(submitted) in (len(GOOD), len(GOOD) + 1)
    directory = store.partition_dir(root, "birdnet", "train")
    assert store.stored_files(directory) == set(GOOD) - {lost}
    assert set(store.failures(directory)) == {lost}

    monkeypatch.setattr(ray_engine, "_submit", submit)
    rerun = extract(config(good_only, root))
    assert (rerun.succeeded, rerun.already_stored, rerun.failed) == (1, len(GOOD) - 1, 0)
    assert_same_rows(reference[0], rows(root))
    assert store.failures(directory) == {}


def test_workers_whose_model_differs_from_the_manifest_are_refused(audio, tmp_path):
    """A node with other weights at the same path must not mix its rows into the partition."""
    job = config(audio, tmp_path / "store")
    backbone = load_backbone("birdnet")
    layout = make_layout(backbone, job)
    manifest = make_manifest(backbone, layout)
    manifest["parameters"]["weights_sha256"] = "0" * 64  # what the job's own model would be, elsewhere
    directory = store.partition_dir(job.store, "birdnet", "train")
    store.check_or_write_manifest(directory, manifest)
    with pytest.raises(BackboneError, match="weights_sha256"):
        list(ray_engine.run_ray(job, layout, audio, discover(audio)[:2]))
