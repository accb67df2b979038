"""birdemb extract: store layout and schema, resumption (with a real kill -9), bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from birdemb import store
from birdemb.backbones import load_backbone
from birdemb.cli import main
from birdemb.extract.job import ExtractConfig, extract
from birdemb.runtime.audio import load_audio
from tests.helpers.audio import write_audio
from tests.helpers.paths import REPOSITORY

ROOT = REPOSITORY


def config(audio, root, **overrides) -> ExtractConfig:
    values = dict(audio=str(audio), store=str(root), model="birdnet", dataset="train", workers=1, progress=False)
    values.update(overrides)
    return ExtractConfig(**values)


def rows(root, dataset="train") -> pl.DataFrame:
    return store.scan(root, "birdnet", dataset).sort("file", "window").collect()


@pytest.fixture(scope="module")
def birdnet():
    return load_backbone("birdnet")


def test_store_layout_schema_and_manifest(small_corpus, tmp_path):
    root = tmp_path / "store"
    summary = extract(config(small_corpus, root))
    assert summary.succeeded == 4 and summary.failed == 0
    part_dir = root / "embeddings" / "model=birdnet" / "dataset=train"
    assert part_dir.is_dir() and list(part_dir.glob("part-*.parquet"))
    frame = pl.scan_parquet(str(root / "embeddings" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert {"file", "species", "window", "start_s", "end_s", "embedding", "logits", "model", "dataset"} <= set(frame.columns)
    assert set(frame["model"]) == {"birdnet"} and set(frame["dataset"]) == {"train"}
    arrow = pq.read_schema(next(part_dir.glob("part-*.parquet")))
    for name, size in (("embedding", 1024), ("logits", 6522)):
        field_type = arrow.field(name).type
        assert pa.types.is_fixed_size_list(field_type) and field_type.list_size == size
        assert field_type.value_type == pa.float32()
    # durations 7, 11.2, 4, 12.5 s -> windows 2 (2 s left), 3 (1.2 s left), 1, 3 (2.5 s left)
    counts = dict(frame.group_by("file").len().iter_rows())
    assert counts == {"amerob/XC1.wav": 2, "amerob/XC2.flac": 3, "norcar/XC3.ogg": 1, "norcar/XC4.wav": 3}
    species = dict(frame.select("file", "species").unique().iter_rows())
    assert species["amerob/XC2.flac"] == "amerob" and species["norcar/XC3.ogg"] == "norcar"
    xc4 = frame.filter(pl.col("file") == "norcar/XC4.wav").sort("window")
    assert xc4["window"].to_list() == [0, 1, 2]
    assert xc4["start_s"].to_list() == [0.0, 5.0, 10.0] and xc4["end_s"].to_list() == [5.0, 10.0, 15.0]
    manifest = json.loads((part_dir / "_manifest.json").read_text())
    assert manifest["model"] == "birdnet" and len(manifest["labels"]) == 6522
    assert len(manifest["weights_sha256"]) == 64
    assert manifest["layout"]["frame_offsets_s"] == [0.0, 2.0] and manifest["layout"]["sample_rate"] == 48000
    assert manifest["code_version"]
    assert store.audio_roots(part_dir) == [str(small_corpus.resolve())]  # where clips and the app find audio


def test_overlapping_windows_start_every_window_minus_overlap(small_corpus, tmp_path, birdnet):
    root = tmp_path / "store"
    extract(config(small_corpus, root, window_s=3.0, overlap_s=1.0))
    xc1 = rows(root).filter(pl.col("file") == "amerob/XC1.wav")  # 7 s: starts 0, 2, 4, 6 (1 s left)
    assert xc1["start_s"].to_list() == [0.0, 2.0, 4.0, 6.0] and xc1["end_s"].to_list() == [3.0, 5.0, 7.0, 9.0]
    audio = np.pad(load_audio(small_corpus / "amerob" / "XC1.wav", 48000), (0, 3 * 48000))
    frames = np.stack([audio[s * 48000 : (s + 3) * 48000] for s in (0, 2, 4, 6)]).astype(np.float32)
    np.testing.assert_allclose(np.stack(xc1["embedding"].to_numpy()), birdnet.embed(frames)[0], atol=1e-5)
    assert store.manifest(root, "birdnet", "train")["layout"]["hop_s"] == 2.0


def test_rows_equal_the_backbone_on_the_files_own_frames(small_corpus, tmp_path, birdnet):
    """44.1 kHz stereo flac: decoded, downmixed, resampled once, framed at +0/+2 s, pooled."""
    root = tmp_path / "store"
    extract(config(small_corpus, root))
    stored = rows(root).filter(pl.col("file") == "amerob/XC2.flac")
    audio = load_audio(small_corpus / "amerob" / "XC2.flac", 48000)
    frames = [np.pad(audio[s * 48000 : (s + 3) * 48000], (0, max(0, (s + 3) * 48000 - len(audio)))) for s in (0, 2, 5, 7, 10)]
    emb, logits = birdnet.embed(np.stack(frames).astype(np.float32))
    # window 2 has 1.2 s of audio: its +2 s frame would start past the end, so it is not used
    expected_emb = np.stack([emb[0:2].mean(0), emb[2:4].mean(0), emb[4]])
    expected_logits = np.stack([logits[0:2].max(0), logits[2:4].max(0), logits[4]])
    np.testing.assert_allclose(np.stack(stored["embedding"].to_numpy()), expected_emb, atol=1e-5)
    np.testing.assert_allclose(np.stack(stored["logits"].to_numpy()), expected_logits, atol=1e-4)


def test_centre_frame_grid_rows_are_the_model_on_one_frame_at_each_windows_middle(small_corpus, tmp_path, birdnet):
    root = tmp_path / "store"
    extract(config(small_corpus, root, frame_grid="centre"))
    stored = rows(root).filter(pl.col("file") == "amerob/XC2.flac")  # 11.2 s: windows at 0, 5, 10 (1.2 s)
    audio = np.pad(load_audio(small_corpus / "amerob" / "XC2.flac", 48000), (0, 5 * 48000))
    # windows 0 and 1: the frame at +1 s; window 2 holds 1.2 s of audio: its frame moves back to the window's start
    frames = np.stack([audio[s * 48000 : (s + 3) * 48000] for s in (1, 6, 10)]).astype(np.float32)
    emb, logits = birdnet.embed(frames)
    np.testing.assert_allclose(np.stack(stored["embedding"].to_numpy()), emb, atol=1e-5)
    np.testing.assert_allclose(np.stack(stored["logits"].to_numpy()), logits, atol=1e-4)
    assert store.manifest(root, "birdnet", "train")["layout"]["frame_offsets_s"] == [1.0]


def test_rerun_skips_stored_files_and_adds_new_ones(small_corpus, tmp_path):
    root = tmp_path / "store"
    first = extract(config(small_corpus, root))
    again = extract(config(small_corpus, root))
    assert (again.succeeded, again.already_stored) == (0, 4)
    write_audio(small_corpus / "norcar" / "XC5.wav", 6.0, 48000, seed=9)
    more = extract(config(small_corpus, root))
    assert (more.succeeded, more.already_stored) == (1, 4)
    frame = rows(root)
    assert frame.height == first.windows + 2
    assert frame.select("file", "window").is_unique().all()


def test_parallel_workers_give_the_same_rows_as_one_process(small_corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extract(config(small_corpus, one, workers=1))
    extract(config(small_corpus, two, workers=2, flush_files=1))
    a, b = rows(one), rows(two)
    assert a.select("file", "window").equals(b.select("file", "window"))
    np.testing.assert_allclose(np.stack(a["embedding"].to_numpy()), np.stack(b["embedding"].to_numpy()), atol=1e-6)


def test_bad_files_are_recorded_and_skipped_and_the_job_goes_on(small_corpus, tmp_path):
    (small_corpus / "norcar" / "empty.wav").write_bytes(b"")
    (small_corpus / "norcar" / "text.mp3").write_text("not audio " * 100)
    good = small_corpus / "amerob" / "XC1.wav"
    (small_corpus / "amerob" / "truncated.flac").write_bytes((small_corpus / "amerob" / "XC2.flac").read_bytes()[:300])
    root = tmp_path / "store"
    summary = extract(config(small_corpus, root))
    assert summary.succeeded + summary.failed == 7
    assert {"norcar/empty.wav", "norcar/text.mp3"} <= set(summary.failures)
    assert summary.succeeded >= 4 and good.exists()
    failed = store.failures(store.partition_dir(root, "birdnet", "train"))
    assert set(failed) == set(summary.failures)
    assert all(file.split("/")[-1] in error for file, error in failed.items())
    assert set(rows(root)["file"]) & set(failed) == set()


def test_store_written_with_other_parameters_is_refused_with_one_line(small_corpus, tmp_path, capsys):
    root = tmp_path / "store"
    extract(config(small_corpus, root))
    code = main(["extract", "--model", "birdnet", "--audio", str(small_corpus), "--store", str(root),
                 "--dataset", "train", "--window-s", "3", "--workers", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "other parameters" in err and "window_s" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "perch2"], "unknown model 'perch2'"),
        (["--audio", "/no/such/folder"], "no such folder"),
    ],
)
def test_usage_errors_are_one_line_without_traceback(small_corpus, tmp_path, args, message):
    base = {"--model": "birdnet", "--audio": str(small_corpus), "--store": str(tmp_path / "s"), "--dataset": "d"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = [sys.executable, "-m", "birdemb", "extract", *[x for kv in base.items() for x in kv], "--quiet"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_stale_temporaries_of_a_killed_writer_are_removed_and_never_read(small_corpus, tmp_path):
    root = tmp_path / "store"
    extract(config(small_corpus, root))
    directory = store.partition_dir(root, "birdnet", "train")
    (directory / ".part-x.parquet.tmp").write_bytes(b"PAR1 half written")
    extract(config(small_corpus, root))
    assert not list(directory.glob(".part-*.tmp"))


def _extract_cli(audio, root, workers):
    return [sys.executable, "-m", "birdemb", "extract", "--model", "birdnet", "--audio", str(audio),
            "--store", str(root), "--dataset", "train", "--workers", str(workers), "--files-per-part", "1", "--quiet"]


def test_kill_minus_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
    audio = tmp_path / "audio"
    for i in range(16):
        write_audio(audio / f"sp{i % 3}" / f"f{i:02d}.wav", 6.0 + (i % 4) * 2.3, 48000, seed=i, freq=1500 + 200 * i)
    reference = tmp_path / "reference"
    subprocess.run(_extract_cli(audio, reference, 1), check=True, cwd=ROOT, capture_output=True)
    killed = tmp_path / "killed"
    directory = store.partition_dir(killed, "birdnet", "train")
    kills = 0
    for delay_parts in (3, 9):  # kill after some parts landed, twice, at different moments
        job = subprocess.Popen(_extract_cli(audio, killed, 2), cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and len(store.part_files(directory)) < delay_parts and job.poll() is None:
            time.sleep(0.02)
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            kills += 1
        job.wait()
    assert kills >= 1, "the job finished before it could be killed"
    assert len(store.stored_files(directory)) < 16 or kills == 2
    subprocess.run(_extract_cli(audio, killed, 2), check=True, cwd=ROOT, capture_output=True)
    a, b = rows(reference), rows(killed)
    assert b.select("file", "window").is_unique().all()
    assert a.select("file", "window").equals(b.select("file", "window"))
    np.testing.assert_allclose(np.stack(a["embedding"].to_numpy()), np.stack(b["embedding"].to_numpy()), atol=1e-6)
    np.testing.assert_allclose(np.stack(a["logits"].to_numpy()), np.stack(b["logits"].to_numpy()), atol=1e-5)
    for part in store.part_files(directory):
        pq.read_table(part)  # every part is complete and readable


def test_info_summarises_the_store(small_corpus, tmp_path, capsys):
    root = tmp_path / "store"
    extract(config(small_corpus, root))
    (small_corpus / "amerob" / "bad.wav").write_bytes(b"junk" * 10)
    extract(config(small_corpus, root))
    [summary] = store.info(root)
    assert summary["files"] == 4 and summary["windows"] == 9 and summary["failures"] == 1
    assert abs(summary["audio_h"] - (7 + 11.2 + 4 + 12.5) / 3600) < 1e-4
    assert main(["info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "birdnet" in out and "train" in out


def test_workers_that_cannot_start_stop_the_job_and_blame_no_file(small_corpus, tmp_path):
    from birdemb.extract.engines.local import WorkerStartError

    root = tmp_path / "store"
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match="exit before they load the .* model"):
        extract(config(small_corpus, root, model="tests.helpers.crashing_backbone:UnstartableBirdNET", workers=2))
    assert time.monotonic() - started < 120  # not one new pool per file, each recording a crash
    assert not list(root.rglob("_failures*")) and not list(root.rglob("*.parquet"))


def test_a_worker_that_dies_loses_only_the_file_that_killed_it(small_corpus, tmp_path):
    import soundfile as sf

    from tests.helpers.crashing_backbone import POISON

    sf.write(small_corpus / "norcar" / "poison.wav", np.full(48000 * 4, POISON, dtype=np.float32), 48000, subtype="FLOAT")
    root = tmp_path / "store"
    summary = extract(config(small_corpus, root, model="tests.helpers.crashing_backbone:CrashingBirdNET", workers=2))
    assert summary.succeeded == 4 and summary.failed == 1
    assert "worker process died" in summary.failures["norcar/poison.wav"]
    stored = store.scan(root, "crashing", "train").collect()
    assert set(stored["file"]) == {"amerob/XC1.wav", "amerob/XC2.flac", "norcar/XC3.ogg", "norcar/XC4.wav"}
