"""Part metadata, manifest rebuilds, in-place replacement and `check`/`repair`, on partitions
written directly with PartWriter (no backbone)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from birdemb import store
from birdemb.store.check import QUARANTINE_PART, REBUILD_MANIFEST, check_partition, check_store
from birdemb.store.repair import repair_store

DIM, LABELS = 4, ["a", "b"]


def manifest_for(window_s: float = 5.0) -> dict:
    layout = {"window_s": window_s, "frame_s": window_s, "sample_rate": 32000}
    return {"model": "gen", "labels": LABELS, "layout": layout, "embedding_dim": DIM, "n_labels": len(LABELS),
            "created": "2024-01-01T00:00:00", "parameters": {"model": "gen", "layout": layout}}


def file_rows(name: str, windows: int, seed: int, fingerprint: dict | None = None) -> store.FileRows:
    rng = np.random.default_rng(seed)
    start = np.arange(windows) * 5.0
    return store.FileRows(name, name.split("/")[0], [], 5.0 * windows, start, start + 5,
                          rng.normal(size=(windows, DIM)).astype(np.float32),
                          rng.normal(size=(windows, len(LABELS))).astype(np.float32), fingerprint)


def write_parts(root, groups: list[list[str]], manifest: dict | None = None, seed: int = 0):
    """One part per group of file names (file k has k % 3 + 1 windows); returns the partition."""
    directory = store.partition_dir(root, "gen", "train")
    store.check_or_write_manifest(directory, manifest or manifest_for())
    for g, names in enumerate(groups):
        writer = store.PartWriter(directory, store.schema(DIM, len(LABELS)), manifest)
        for k, name in enumerate(names):
            writer.add(file_rows(name, k % 3 + 1, seed + 10 * g + k, {"size": 100 + k, "mtime_ns": seed}))
        writer.flush()
    return directory


def rows(root):
    return store.scan(root, "gen", "train").sort("file", "window").collect()


def write_old_part(directory, names: list[str]) -> None:
    """A part as written before parts carried metadata: rows only."""
    table = store.rows_to_table([file_rows(n, 2, k) for k, n in enumerate(names)], store.schema(DIM, len(LABELS)))
    pq.write_table(table, directory / f"part-00000000T000000-{names[0].replace('/', '-')}.parquet")


def test_each_part_carries_the_manifest_and_fingerprints_of_its_files(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav", "b/2.wav"]])
    [part] = store.part_files(directory)
    meta = store.read_meta(part)
    assert meta.manifest == store.read_manifest(directory)
    assert meta.fingerprints == {"a/1.wav": {"size": 100, "mtime_ns": 0}, "b/2.wav": {"size": 101, "mtime_ns": 0}}
    assert check_store(tmp_path / "s").problems == []


def test_a_lost_manifest_is_rebuilt_from_the_parts_and_other_parameters_are_still_refused(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav"], ["b/2.wav"]])
    original = store.read_manifest(directory)
    (directory / store.MANIFEST).unlink()
    [problem] = check_partition(directory)
    assert problem.repair == REBUILD_MANIFEST and "manifest missing" in problem.problem
    with pytest.raises(store.StoreError, match=r"other parameters.*layout\.window_s: stored 5\.0, asked 3\.0"):
        store.check_or_write_manifest(directory, manifest_for(3.0))
    assert store.read_manifest(directory) == original  # rebuilt, `created` and all
    assert store.check_or_write_manifest(directory, manifest_for()) == original


def test_parts_that_disagree_are_refused_by_name(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav"]])
    writer = store.PartWriter(directory, store.schema(DIM, len(LABELS)), manifest_for(3.0))
    writer.add(file_rows("b/2.wav", 1, 5))
    three = writer.flush()
    [five] = [p for p in store.part_files(directory) if p != three]
    (directory / store.MANIFEST).unlink()
    with pytest.raises(store.StoreError) as error:
        store.check_or_write_manifest(directory, manifest_for())
    assert five.name in str(error.value) and three.name in str(error.value) and "window_s" in str(error.value)
    [problem] = check_partition(directory)
    assert problem.repair is None and "disagree" in problem.problem


def test_a_stray_part_is_refused_while_the_manifest_is_there_and_repair_sets_it_aside(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav"]])
    writer = store.PartWriter(directory, store.schema(DIM, len(LABELS)), manifest_for(3.0))
    writer.add(file_rows("b/2.wav", 1, 5))
    stray = writer.flush()
    with pytest.raises(store.StoreError, match=stray.name):
        store.check_or_write_manifest(directory, manifest_for())
    [problem] = check_partition(directory)
    assert problem.path == str(stray) and problem.repair == QUARANTINE_PART
    repair_store(tmp_path / "s")
    assert (directory / store.QUARANTINE / stray.name).is_file()
    assert store.stored_files(directory) == {"a/1.wav"} and check_partition(directory) == []


def test_parts_written_before_metadata_still_read_but_a_lost_manifest_is_not_guessed(tmp_path):
    directory = write_parts(tmp_path / "s", [])
    write_old_part(directory, ["a/1.wav", "b/2.wav"])
    assert store.stored_files(directory) == {"a/1.wav", "b/2.wav"}
    assert {s.fingerprint for s in store.stored_index(directory).values()} == {None}
    assert rows(tmp_path / "s").height == 4 and store.info(tmp_path / "s")[0]["files"] == 2
    assert check_partition(directory) == []
    assert store.check_or_write_manifest(directory, manifest_for())["parameters"] == manifest_for()["parameters"]
    (directory / store.MANIFEST).unlink()
    with pytest.raises(store.StoreError, match="carry no parameters.*birdemb check"):
        store.check_or_write_manifest(directory, manifest_for())
    [problem] = check_partition(directory)
    assert problem.repair is None and "carry no parameters" in problem.problem


def test_a_stored_file_is_replaced_inside_its_part(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav", "b/2.wav", "a/3.wav"], ["b/4.wav"]])
    before = rows(tmp_path / "s")
    index = store.stored_index(directory)
    writer = store.PartWriter(directory, store.schema(DIM, len(LABELS)),
                              stored={f: s.part for f, s in index.items()})
    new = file_rows("b/2.wav", 4, 99, {"size": 7, "mtime_ns": 7})
    writer.add(new)
    writer.add(file_rows("c/5.wav", 1, 98))
    writer.flush()
    after = rows(tmp_path / "s")
    assert after.select("file", "window").is_unique().all()
    b2 = after.filter(after["file"] == "b/2.wav")
    np.testing.assert_array_equal(np.stack(b2["embedding"].to_numpy()), new.embedding)
    others = ["a/1.wav", "a/3.wav", "b/4.wav"]
    assert after.filter(after["file"].is_in(others)).equals(before.filter(before["file"].is_in(others)))
    part = index["b/2.wav"].part
    assert store.stored_index(directory)["b/2.wav"] == store.Stored(part, {"size": 7, "mtime_ns": 7})
    assert store.read_meta(part).fingerprints["a/1.wav"] == {"size": 100, "mtime_ns": 0}
    assert len(store.part_files(directory)) == 3 and check_partition(directory) == []


def test_a_replacement_that_fails_keeps_the_old_rows_and_no_temporary(tmp_path, monkeypatch):
    directory = write_parts(tmp_path / "s", [["a/1.wav", "b/2.wav"]])
    before = rows(tmp_path / "s")
    real = pq.write_table

    def killed(table, where, **kwargs):
        real(table.slice(0, 1), where, **kwargs)
        raise OSError("killed mid-write")

    monkeypatch.setattr(pq, "write_table", killed)
    writer = store.PartWriter(directory, store.schema(DIM, len(LABELS)),
                              stored={f: s.part for f, s in store.stored_index(directory).items()})
    writer.add(file_rows("b/2.wav", 3, 50))
    with pytest.raises(store.StoreError, match="could not write"):
        writer.flush()
    monkeypatch.undo()
    assert rows(tmp_path / "s").equals(before)
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith(".")) == []


def test_a_file_in_two_parts_is_reported_and_the_older_part_set_aside(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav", "b/2.wav"], ["b/2.wav", "a/3.wav"]])
    older, newer = store.part_files(directory)
    [problem] = check_partition(directory)
    assert problem.path == str(older) and newer.name in problem.problem and "b/2.wav" in problem.problem
    assert repair_store(tmp_path / "s") == [f"{older}: moved to {directory / store.QUARANTINE / older.name}"]
    assert store.stored_files(directory) == {"b/2.wav", "a/3.wav"} and check_partition(directory) == []


def test_gaps_in_window_numbers_and_foreign_columns_are_reported(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav"]])
    table = store.rows_to_table([file_rows("b/2.wav", 3, 1)], store.schema(DIM, len(LABELS)))
    table = table.set_column(3, "window", pa.array([0, 1, 3], pa.int32()))
    pq.write_table(table, directory / "part-gap.parquet")
    wide = store.rows_to_table([file_rows("c/3.wav", 1, 2)], store.schema(DIM, len(LABELS)))
    wide = wide.append_column("extra", pa.array([1.0]))
    pq.write_table(wide, directory / "part-wide.parquet")
    problems = {p.path.rsplit("/", 1)[-1]: p for p in check_partition(directory)}
    assert set(problems) == {"part-gap.parquet", "part-wide.parquet"}
    assert "b/2.wav" in problems["part-gap.parquet"].problem
    assert "extra" in problems["part-wide.parquet"].problem
    assert {p.repair for p in problems.values()} == {QUARANTINE_PART}


def test_the_manifest_must_hold_parameters(tmp_path):
    directory = write_parts(tmp_path / "s", [["a/1.wav"]])
    (directory / store.MANIFEST).write_text(json.dumps({"model": "gen"}))
    with pytest.raises(store.StoreError, match=r"_manifest.json: damaged manifest.*birdemb check"):
        store.read_manifest(directory)
    [problem] = check_partition(directory)
    assert problem.repair == REBUILD_MANIFEST
