"""A long file's rows go to disk as they are made (birdemb.store.spill): the stored rows equal the
in-memory path's, row by row, in this process and through the pool; a job stopped or killed
mid-spill leaves nothing readers see and a rerun equals an uninterrupted run; and the memory
held no longer grows with the recording's length."""
from __future__ import annotations

import errno
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from birdemb import store
from birdemb.extract.discovery import AudioItem
from birdemb.extract.job import ExtractConfig, extract
from birdemb.extract.worker import file_rows
from birdemb.runtime.audio import WindowLayout
from birdemb.store.check import check_store
from tests.helpers.audio import write_audio

TOY = "tests.helpers.toy_backbone:ToyBackbone"
BOUND = 16  # windows held before spilling: the long file below spills 16, 16, then its last 11
LONG = "norcar/long.wav"
IN_MEMORY = 10**6  # a bound no file here reaches: today's path


def corpus(tmp_path):
    """Two short files and a 215 s one (43 windows), labels from metadata, secondary ones too."""
    audio = tmp_path / "audio"
    write_audio(audio / "amerob" / "a1.wav", 12.0, 16000, seed=1, freq=1000)
    write_audio(audio / "amerob" / "a2.wav", 7.5, 16000, seed=2, freq=3500)
    write_audio(audio / LONG, 215.0, 16000, seed=3, freq=2500)
    metadata = tmp_path / "meta.csv"
    metadata.write_text("primary_label,secondary_labels,filename\n"
                        "amerob,[],amerob/a1.wav\namerob,['houspa'],amerob/a2.wav\n"
                        "norcar,\"['amerob', 'houspa']\",norcar/long.wav\n")
    return audio, metadata


def run(tmp_path, name: str, spill_rows: int, workers: int = 1):
    audio, metadata = corpus(tmp_path) if not (tmp_path / "audio").exists() else (tmp_path / "audio",
                                                                                   tmp_path / "meta.csv")
    config = ExtractConfig(audio=str(audio), store=str(tmp_path / name), model=TOY, dataset="d", workers=workers,
                           metadata=str(metadata), progress=False, spill_rows=spill_rows)
    return extract(config), store.partition_dir(config.store, "toy", "d")


def rows(directory) -> pa.Table:
    """Every stored row, in (file, window) order, without the parts' footers."""
    tables = [store.read_part(part).replace_schema_metadata(None) for part in store.part_files(directory)]
    return pa.concat_tables(tables).sort_by([("file", "ascending"), ("window", "ascending")])


def prints(directory) -> dict:
    return {file: where.fingerprint for file, where in store.stored_index(directory).items()}


def holder_of(directory, file: str):
    return store.stored_index(directory)[file].part


def temporaries(directory) -> list[str]:
    return sorted(p.name for p in directory.glob(".part-*"))


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory):
    """The reference: the same corpus extracted with every file's rows in memory."""
    tmp = tmp_path_factory.mktemp("memory")
    summary, directory = run(tmp, "store", IN_MEMORY)
    assert summary.succeeded == 3 and len(store.part_files(directory)) == 1  # nothing spilled
    return rows(directory), summary


def assert_same_store(directory, in_memory) -> None:
    reference, _ = in_memory
    stored = rows(directory)
    assert stored.num_rows == reference.num_rows == 43 + 3 + 2
    assert stored.equals(reference)  # columns, values, window numbers, labels, durations
    audio = directory.parent.parent.parent.parent / "audio"
    assert prints(directory) == {file: store.fingerprint(audio / file) for file in ("amerob/a1.wav", "amerob/a2.wav",
                                                                                    LONG)}
    report = check_store(directory.parent.parent.parent)
    assert report.problems == [] and report.files == 3
    assert temporaries(directory) == []


# ---------------------------------------------------------------- (a, b) the rows equal the in-memory path's


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "pool"])
def test_a_spilled_file_is_stored_exactly_as_in_memory(tmp_path, in_memory, workers):
    summary, directory = run(tmp_path, "store", BOUND, workers)
    assert_same_store(directory, in_memory)
    assert (summary.succeeded, summary.windows, summary.audio_s) == (3, 48, in_memory[1].audio_s)
    long_part = holder_of(directory, LONG)  # a part of its own, written chunk by chunk
    assert store.read_part(long_part).column("file").unique().to_pylist() == [LONG]
    assert pq.ParquetFile(long_part).num_row_groups == 3  # 16 + 16 + the last 11 windows
    assert holder_of(directory, "amerob/a1.wav") == holder_of(directory, "amerob/a2.wav") != long_part


def test_the_parent_flushes_once_the_rows_waiting_reach_the_bound(tmp_path, in_memory):
    _, directory = run(tmp_path, "store", 3)  # a1's 3 windows reach it: a2's 2 go to the next part
    assert_same_store(directory, in_memory)
    assert len({holder_of(directory, file) for file in ("amerob/a1.wav", "amerob/a2.wav", LONG)}) == 3


def test_a_changed_long_file_is_replaced_in_its_part_in_memory(tmp_path, in_memory):
    _, directory = run(tmp_path, "store", BOUND)
    first = holder_of(directory, LONG)
    write_audio(tmp_path / "audio" / LONG, 60.0, 16000, seed=9, freq=2000)  # a new copy: 12 windows
    summary, _ = run(tmp_path, "store", 4)  # it would spill, were it not stored already
    assert summary.changed == 1 and summary.windows == 12
    assert holder_of(directory, LONG) == first  # rewritten where it lay
    assert rows(directory).filter(pc.equal(rows(directory).column("file"), LONG)).num_rows == 12
    assert check_store(tmp_path / "store").problems == [] and temporaries(directory) == []


# ---------------------------------------------------------------- (c) stopped or killed mid-spill


def stop_long_file_after(monkeypatch, calls: int):
    """Ctrl-C inside file_rows at the long file's `calls`+1-th group of 16 windows (the short
    files' groups are smaller; the long file's are 16, 16, then its last 11): by then `calls` *
    16 windows have spilled."""
    from tests.helpers.toy_backbone import ToyBackbone

    embed, seen = ToyBackbone.embed, []

    def stopping(self, frames):
        if len(frames) == 16:
            seen.append(1)
            if len(seen) > calls:
                raise KeyboardInterrupt
        return embed(self, frames)

    monkeypatch.setattr(ToyBackbone, "embed", stopping)


def kill_at_adoption(monkeypatch):
    """As if killed right after the worker finished the part, before the parent named it."""
    def killed(self, spilled):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.PartWriter, "adopt", killed)


@pytest.mark.parametrize("how", ["stopped", "killed-mid-spill", "killed-before-adoption"])
def test_an_interrupted_spill_leaves_nothing_visible_and_a_rerun_equals_an_uninterrupted_run(
        tmp_path, monkeypatch, in_memory, how):
    if how == "killed-before-adoption":
        kill_at_adoption(monkeypatch)
    else:
        stop_long_file_after(monkeypatch, 1)
    if how == "killed-mid-spill":  # a killed process cleans nothing up
        monkeypatch.setattr(store.SpillPart, "discard", lambda self: None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "store", BOUND)
    monkeypatch.undo()
    directory = store.partition_dir(tmp_path / "store", "toy", "d")
    assert store.stored_files(directory) == {"amerob/a1.wav", "amerob/a2.wav"}  # finished files kept
    assert set(rows(directory).column("file").to_pylist()) == {"amerob/a1.wav", "amerob/a2.wav"}
    assert check_store(tmp_path / "store").problems == []  # hidden temporaries are no parts
    left = temporaries(directory)
    if how == "stopped":
        assert left == []  # the stopped file removed what it had spilled
    else:
        assert left and all(name.endswith(".tmp") for name in left)
    summary, _ = run(tmp_path, "store", BOUND)
    assert summary.succeeded == 1 and summary.already_stored == 2
    assert_same_store(directory, in_memory)


def test_a_model_error_mid_spill_is_a_recorded_failure_with_nothing_left(tmp_path, monkeypatch):
    from tests.helpers.toy_backbone import ToyBackbone

    embed, seen = ToyBackbone.embed, []

    def failing(self, frames):
        seen.append(len(frames))
        if seen.count(16) > 1:  # the second group of the long file: the first has spilled
            raise RuntimeError("model fell over")
        return embed(self, frames)

    monkeypatch.setattr(ToyBackbone, "embed", failing)
    summary, directory = run(tmp_path, "store", BOUND)
    assert summary.failed == 1 and "model fell over" in summary.failures[LONG]
    assert store.stored_files(directory) == {"amerob/a1.wav", "amerob/a2.wav"} and temporaries(directory) == []


def test_a_full_disk_while_spilling_ends_the_job_in_one_line_keeping_finished_files(tmp_path, monkeypatch):
    def full(self, *columns):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pa.ipc.RecordBatchFileWriter, "write_table", full)
    with pytest.raises(store.StoreError, match=r"disk full .* free space and rerun to resume"):
        run(tmp_path, "store", BOUND)
    directory = store.partition_dir(tmp_path / "store", "toy", "d")
    assert store.stored_files(directory) == {"amerob/a1.wav", "amerob/a2.wav"} and temporaries(directory) == []
    assert store.failures(directory) == {}  # not the file's fault: redone on the next run


# ---------------------------------------------------------------- (d) memory held does not grow with length


class WideBackbone:
    """A numpy stand-in with BirdNET-sized rows (4,000 + 2,000 floats: 24 KB a window), so rows
    held in memory would show; the audio behind a window is 5 s at 8 kHz, 160 KB."""

    frame_s = 5.0
    sample_rate = 8000

    def embed(self, frames: np.ndarray):
        return np.repeat(frames[:, :1000], 4, axis=1), frames[:, ::20].copy()


def peak_bytes(tmp_path, seconds: float, spill_rows: int | None) -> tuple[int, object]:
    name = f"w{seconds:g}.wav"
    signal = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    with sf.SoundFile(tmp_path / name, "w", 8000, 1, subtype="FLOAT") as out:
        for _ in range(int(seconds)):
            out.write(signal)
    layout = WindowLayout(5.0, 5.0, 8000)
    folder = tmp_path / "partition"
    folder.mkdir(exist_ok=True)
    spill = None if spill_rows is None else store.Spill(
        store.SpillTarget(folder, store.schema(4000, 2000), None, spill_rows), {"size": 1, "mtime_ns": 1})
    tracemalloc.start()
    try:
        result = file_rows(WideBackbone(), layout, tmp_path, AudioItem(name, None), block_s=10.0, spill=spill)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_peak_memory_with_spilling_does_not_grow_with_the_recordings_length(tmp_path):
    peak_bytes(tmp_path, 30.0, 4)  # the first call's imports and caches would count as the short file's
    short, _ = peak_bytes(tmp_path, 150.0, BOUND)  # 30 windows: spills once already
    long, long_rows = peak_bytes(tmp_path, 1500.0, BOUND)
    assert isinstance(long_rows, store.Spilled) and long_rows.n_windows == 300 and long_rows.duration_s == 1500.0
    assert pq.ParquetFile(long_rows.path).metadata.num_rows == 300
    assert long - short < 1_000_000, (short, long)  # 270 more windows would be 6.5 MB of rows
    held, _ = peak_bytes(tmp_path, 1500.0, None)  # the same file with its rows in memory: the test can fail
    assert held - long > 6_000_000, (long, held)
