"""A damaged or full store, end to end through the command line with the toy backbone: a lost
or cut manifest, a part cut in half, a half-written failure line, a changed audio file and a
full disk each end in one line naming the file, and `check --repair` plus a rerun give the
store an uninterrupted run gives."""
from __future__ import annotations

import errno
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from birdemb import store
from birdemb.cli import main
from birdemb.store import files
from birdemb.store.reader import failure_record
from tests.helpers.audio import write_audio

TOY = "tests.helpers.toy_backbone:ToyBackbone"


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "audio"
    for k in range(6):
        write_audio(root / f"sp{k % 2}" / f"f{k}.wav", 6.0 + 2.5 * (k % 3), 16000, seed=k, freq=800 + 400 * k)
    return root


def extract(audio, root, *extra) -> int:
    return main(["extract", "--model", TOY, "--audio", str(audio), "--store", str(root), "--dataset", "train",
                 "--workers", "1", "--files-per-part", "2", "--quiet", *extra])


def partition(root):
    return store.partition_dir(root, "toy", "train")


def rows(root):
    return store.scan(root, "toy", "train").sort("file", "window").collect()


def assert_same_rows(a, b):
    plain = ["file", "species", "window", "start_s", "end_s", "file_duration_s"]
    assert a.select(plain).equals(b.select(plain))
    for column in ("embedding", "logits"):
        np.testing.assert_allclose(np.stack(a[column].to_numpy()), np.stack(b[column].to_numpy()), atol=1e-6)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def cut_in_half(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_lost_manifest_is_rebuilt_and_another_window_length_refused(corpus, tmp_path, capsys):
    root = tmp_path / "store"
    assert extract(corpus, root) == 0
    directory = partition(root)
    original, parts = store.read_manifest(directory), store.part_files(directory)
    (directory / store.MANIFEST).unlink()
    capsys.readouterr()
    assert extract(corpus, root, "--window-s", "10") == 2
    err = one_error_line(capsys)
    assert "other parameters" in err and "window_s: stored 5.0, asked 10.0" in err
    assert store.read_manifest(directory) == original and store.part_files(directory) == parts


def test_a_part_cut_in_half_is_named_set_aside_and_exactly_its_files_redone(corpus, tmp_path, capsys):
    reference, root = tmp_path / "reference", tmp_path / "store"
    assert extract(corpus, reference) == 0 and extract(corpus, root) == 0
    directory = partition(root)
    part = store.part_files(directory)[1]
    lost = set(pq.read_table(part, columns=["file"])["file"].to_pylist())
    cut_in_half(part)
    capsys.readouterr()
    for command in (["info", str(root)], ["train-head", "--store", str(root), "--embeddings", "toy", "--surrogate",
                                          "toy", "--labels", "species", "--out", str(tmp_path / "run")]):
        assert main(command) == 2
        err = one_error_line(capsys)
        assert part.name in err and f"birdemb check {root}" in err
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{part}: unreadable part" in out and "1 problem(s)" in out
    assert main(["check", str(root), "--repair"]) == 0
    assert (directory / store.QUARANTINE / part.name).read_bytes()  # set aside, not deleted
    summary = capsys.readouterr().out
    assert extract(corpus, root) == 0
    assert f"{len(lost)} files stored, 0 failed, {6 - len(lost)} already stored" in capsys.readouterr().out
    assert_same_rows(rows(root), rows(reference))
    assert main(["check", str(root)]) == 0, summary


def test_a_manifest_cut_in_half_is_named_and_rebuilt(corpus, tmp_path, capsys):
    root = tmp_path / "store"
    assert extract(corpus, root) == 0
    directory = partition(root)
    original = store.read_manifest(directory)
    cut_in_half(directory / store.MANIFEST)
    capsys.readouterr()
    assert main(["info", str(root)]) == 2
    assert f"{directory / store.MANIFEST}: damaged manifest" in one_error_line(capsys)
    assert main(["check", str(root), "--repair"]) == 0
    assert store.read_manifest(directory) == original
    assert (directory / store.QUARANTINE / store.MANIFEST).is_file()


def test_a_half_written_failure_line_is_skipped_reported_and_dropped(corpus, tmp_path, capsys):
    root = tmp_path / "store"
    (corpus / "sp0" / "empty.wav").write_bytes(b"")
    assert extract(corpus, root) == 0
    log = partition(root) / store.FAILURES
    log.write_text(log.read_text() + '{"file": "sp1/torn.wav", "err')  # a killed job's last line
    assert set(store.failures(partition(root))) == {"sp0/empty.wav"}
    assert store.info(root)[0]["failure_lines_skipped"] == 1
    (corpus / "sp1" / "bad.wav").write_bytes(b"junk" * 10)
    assert extract(corpus, root) == 0  # appends after the torn line, not onto it
    assert set(store.failures(partition(root))) == {"sp0/empty.wav", "sp1/bad.wav"}
    records = [failure_record(line) for line in log.read_text().splitlines()]
    assert [r["file"] for r in records if r] == ["sp0/empty.wav", "sp0/empty.wav", "sp1/bad.wav"]
    capsys.readouterr()
    assert main(["check", str(root)]) == 1
    assert f"{log}: line 2 is half-written" in capsys.readouterr().out
    assert main(["check", str(root), "--repair"]) == 0
    assert set(store.failures(partition(root))) == {"sp0/empty.wav", "sp1/bad.wav"}
    assert store.failure_log(partition(root)).bad_lines == []


def test_a_changed_file_is_extracted_again_and_its_rows_replaced(corpus, tmp_path, capsys):
    root, reference = tmp_path / "store", tmp_path / "reference"
    (corpus / "sp1" / "f5.wav").write_bytes(b"")  # fails first, then is repaired
    assert extract(corpus, root) == 0
    parts = store.part_files(partition(root))
    write_audio(corpus / "sp0" / "f2.wav", 13.0, 16000, seed=42, freq=3000)  # a repaired copy
    write_audio(corpus / "sp1" / "f5.wav", 6.0, 16000, seed=5, freq=2800)
    capsys.readouterr()
    assert extract(corpus, root) == 0
    out = capsys.readouterr().out
    assert "2 files stored (1 changed since stored, extracted again), 0 failed, 4 already stored" in out
    assert extract(corpus, reference) == 0
    assert_same_rows(rows(root), rows(reference))
    assert store.failures(partition(root)) == {}
    assert set(parts) <= set(store.part_files(partition(root)))  # replaced inside its part
    assert main(["check", str(root)]) == 0


def test_a_full_disk_while_writing_a_part_ends_in_one_line_and_leaves_no_temporary(corpus, tmp_path, capsys,
                                                                                    monkeypatch):
    root, reference = tmp_path / "store", tmp_path / "reference"
    real, calls = pq.write_table, []

    def fills_up(table, where, **kwargs):
        calls.append(where)
        if len(calls) >= 2:  # from the second part on: half written, then the disk is full
            real(table.slice(0, 1), where, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", fills_up)
    assert extract(corpus, root) == 2
    monkeypatch.undo()
    err = one_error_line(capsys)
    assert "disk full (no space left on device) while writing part-" in err and "rerun to resume" in err
    directory = partition(root)
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []
    assert len(store.part_files(directory)) == 1  # the finished part is kept
    assert extract(corpus, root) == 0 and extract(corpus, reference) == 0
    assert_same_rows(rows(root), rows(reference))


def test_a_full_disk_while_writing_the_manifest_leaves_no_temporary(corpus, tmp_path, capsys, monkeypatch):
    root = tmp_path / "store"

    def fills_up(filesystem, target, data):
        with open(target, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "write_bytes", fills_up)
    assert extract(corpus, root) == 2
    assert f"{partition(root) / store.MANIFEST}: disk full" in one_error_line(capsys)
    assert sorted(p.name for p in partition(root).iterdir()) == [store.LOCK]


def test_a_part_with_damaged_data_is_named_by_train_head(tmp_path, capsys):
    """The footer is intact (so scan() accepts the part), the column data is garbage: the
    error appears only when rows are read, and must still name the part and `birdemb check`."""
    from birdemb.cli import main
    from tests.helpers.stores import separable_store

    root = separable_store(tmp_path / "store", 20, 6)
    (part,) = store.part_files(store.partition_dir(root, "gen", "train"))
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8  # footer length + its 4-byte length + "PAR1"
    data[4: len(data) - footer] = b"\xff" * (len(data) - footer - 4)  # every data page, nothing else
    part.write_bytes(bytes(data))
    store.read_meta(part)  # the footer still reads
    code = main(["train-head", "--store", str(root), "--embeddings", "gen", "--surrogate", "gen",
                 "--labels", "folder", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and str(part) in err and "birdemb check" in err and "Traceback" not in err
