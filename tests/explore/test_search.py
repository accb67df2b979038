"""Search by example: the index against exact (numpy) search, extension and rebuilds, queries
from the store and from recordings embedded with the real BirdNET, clips, Raven tables, the CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from birdemb import cli, store
from birdemb.deploy.detection_formats import read_raven_table
from birdemb.deploy.detection_tables import RAVEN_COLUMNS
from birdemb.explore import ann
from birdemb.explore.index import build_index, open_index
from birdemb.explore.search import exact_search, parse_query, search
from birdemb.explore.search_output import write_raven
from birdemb.extract.job import ExtractConfig, extract
from tests.helpers.stores import separable_store


def add_files(root, names, dim=32, seed=1):
    """More files in the generated store's partition (a new part, as a later extraction writes)."""
    rng = np.random.default_rng(seed)
    directory = store.partition_dir(root, "gen", "train")
    writer = store.PartWriter(directory, store.schema(dim, 4), store.read_manifest(directory))
    for name in names:
        start = np.arange(3) * 5.0
        writer.add(store.FileRows(name, "e", [], 15.0, start, start + 5, rng.normal(0, 1, (3, dim)).astype(np.float32),
                                  rng.normal(0, 1, (3, 4)).astype(np.float32)))
    writer.flush()


def keys(found):
    return [(n.file, n.window) for n in found]


@pytest.fixture()
def gen_store(tmp_path):
    return separable_store(tmp_path / "store", 24, 10)


def test_parse_query():
    assert parse_query("a/b.wav@12.5") == parse_query(("a/b.wav", 12.5))
    assert parse_query("a/b.wav").start_s == 0.0
    assert parse_query("odd@name.wav").file == "odd@name.wav"  # no number after @: part of the name


@pytest.mark.parametrize("dtype,nlist", [("f16", None), ("f32", 6), ("f16", 6)])
def test_own_window_first_and_same_as_exact(gen_store, dtype, nlist):
    info = build_index(gen_store, "gen", dtype=dtype, nlist=nlist, progress=False)
    assert info.rows == 240 and info.plan["nlist"] == (nlist or 0)
    for query in ("a/f0.wav@5", "c/f2.wav@22.5", "d/f7.wav@45"):
        found, truth = search(gen_store, "gen", query, k=10), exact_search(gen_store, "gen", query, k=10)
        file, start = query.split("@")
        assert (found[0].file, found[0].start_s <= float(start) < found[0].end_s) == (file, True)
        assert found[0].similarity == pytest.approx(1.0, abs=1e-3)
        assert keys(found) == keys(truth)  # every list probed (nprobe = nlist here): the exact neighbours
        np.testing.assert_allclose([n.similarity for n in found], [n.similarity for n in truth], atol=2e-3)


def test_exact_matches_a_direct_numpy_ranking(gen_store):
    build_index(gen_store, "gen", progress=False)
    vectors = open_index(gen_store, "gen").vectors()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = open_index(gen_store, "gen").rows
    q = rows.with_row_index().filter((rows["file"] == "b/f5.wav") & (rows["window"] == 3))["index"][0]
    order = np.argsort(-(unit @ unit[q]))[:10]
    found = exact_search(gen_store, "gen", "b/f5.wav@15", k=10)
    assert keys(found) == [(rows["file"][int(i)], rows["window"][int(i)]) for i in order]


def test_extend_adds_only_new_rows_and_equals_a_fresh_build(gen_store, tmp_path):
    assert build_index(gen_store, "gen", progress=False).action == "built"
    add_files(gen_store, ["e/new1.wav", "e/new2.wav"])
    info = build_index(gen_store, "gen", progress=False)
    assert (info.action, info.added, info.rows) == ("extended", 6, 246)
    fresh = tmp_path / "fresh"
    shutil.copytree(gen_store, fresh, ignore=shutil.ignore_patterns("index"))
    assert build_index(fresh, "gen", progress=False).action == "built"
    extended, rebuilt = open_index(gen_store, "gen"), open_index(fresh, "gen")
    assert extended.rows.sort("file", "window").equals(rebuilt.rows.sort("file", "window"))
    for query in ("e/new1.wav@5", "a/f0.wav@0"):
        a, b = search(gen_store, "gen", query), search(fresh, "gen", query)
        assert keys(a) == keys(b) and [n.similarity for n in a] == [n.similarity for n in b]
    assert build_index(gen_store, "gen", progress=False).action == "unchanged"


def test_changes_that_rebuild(gen_store):
    build_index(gen_store, "gen", progress=False)
    assert build_index(gen_store, "gen", dtype="i8", progress=False).action == "rebuilt"
    directory = store.partition_dir(gen_store, "gen", "train")
    manifest = json.loads((directory / store.MANIFEST).read_text())
    manifest["parameters"]["layout"]["window_s"] = 3.0
    (directory / store.MANIFEST).write_text(json.dumps(manifest))
    info = build_index(gen_store, "gen", dtype="i8", progress=False)
    assert info.action == "rebuilt" and "parameters" in info.reason and info.rows == 240
    add_files(gen_store, ["e/new.wav"])
    store.part_files(directory)[0].unlink()  # a part removed (as `birdemb check --repair` may)
    info = build_index(gen_store, "gen", dtype="i8", progress=False)
    assert info.action == "rebuilt" and "removed" in info.reason
    assert info.rows == sum(len(store.read_part(p)) for p in store.part_files(directory))


def test_growth_past_the_layout_rebuilds_with_lists(tmp_path, monkeypatch):
    root = separable_store(tmp_path / "s", 4, 10)
    monkeypatch.setattr(ann, "FLAT_BELOW", 42)
    assert build_index(root, "gen", progress=False).plan["nlist"] == 0
    add_files(root, ["e/x.wav"])  # 43 rows: past the exact scan's limit
    info = build_index(root, "gen", progress=False)
    assert info.action == "rebuilt" and info.plan["nlist"] == int(2 * np.sqrt(43))


def test_raven_table_of_neighbours(gen_store, tmp_path):
    found = search(gen_store, "gen", "a/f0.wav@0", k=5)
    rows = read_raven_table(write_raven(found, tmp_path / "hits.txt", audio_root="/data"))
    header = (tmp_path / "hits.txt").read_text().splitlines()[0].split("\t")
    assert tuple(header) == RAVEN_COLUMNS
    assert [r["Selection"] for r in rows] == [1, 2, 3, 4, 5]
    assert [(r["Begin Time (s)"], r["End Time (s)"]) for r in rows] == [(n.start_s, n.end_s) for n in found]
    assert [r["Confidence"] for r in rows] == [round(n.similarity, 4) for n in found]
    assert rows[0]["Begin Path"] == "/data/a/f0.wav" and rows[0]["Species Code"] == "a"


# ---------------------------------------------------------------- real BirdNET embeddings on xc10

FILES = ["blkpho/XC192052.mp3", "blkpho/XC322227.mp3", "caltow/XC539643.mp3", "caltow/XC129079.mp3"]


@pytest.fixture(scope="module")
def birdnet_store(xc10, tmp_path_factory):
    """Four xc10 recordings (two species) extracted with the real BirdNET."""
    folder = tmp_path_factory.mktemp("search")
    audio = folder / "audio"
    for name in FILES:
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        (audio / name).symlink_to(xc10 / "train_audio" / name)
    extract(ExtractConfig(audio=str(audio), store=str(folder / "store"), model="birdnet", dataset="xc",
                          workers=1, progress=False))
    return folder / "store", audio


def test_recording_outside_the_store_finds_its_twin(birdnet_store, tmp_path):
    root, audio = birdnet_store
    outside = tmp_path / "elsewhere.mp3"
    shutil.copy(audio / FILES[3], outside)
    for start in (0.0, 5.5):
        found = search(root, "birdnet", f"{outside}@{start}", k=3)
        assert (found[0].file, found[0].window) == (FILES[3], int(start // 5))
        assert found[0].similarity == pytest.approx(1.0, abs=1e-3)
    stored = search(root, "birdnet", f"{FILES[3]}@5.5", k=3)  # the same window, read from the store
    assert keys(stored) == keys(found)


def test_cli_index_and_search_end_to_end(birdnet_store, tmp_path, capsys, monkeypatch):
    root, audio = birdnet_store
    shutil.rmtree(root / "index", ignore_errors=True)  # search builds a missing index first, and says so
    clips, raven = tmp_path / "clips", tmp_path / "hits.txt"
    code = cli.main(["search", "--store", str(root), "--model", "birdnet", "--query", f"{FILES[0]}@0", "--k", "4",
                     "--audio", str(audio), "--clips", str(clips), "--raven", str(raven)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("index built") and FILES[0] in out[2] and "1.0000" in out[2]
    rows = read_raven_table(raven)
    assert len(rows) == 4 and rows[0]["Begin Path"] == str(audio / FILES[0])
    written = sorted(clips.iterdir())
    assert len(written) == 4
    for clip, row in zip(written, rows):
        info, source = sf.info(clip), sf.info(audio / row["Begin Path"].split(str(audio) + "/")[1])
        expected = min(row["End Time (s)"], source.duration) - row["Begin Time (s)"]
        assert info.samplerate == source.samplerate
        assert info.frames == pytest.approx(expected * info.samplerate, abs=2)
    assert cli.main(["index", "--store", str(root), "--model", "birdnet", "--dtype", "f16"]) == 0
    assert capsys.readouterr().out.startswith("index unchanged")
    assert cli.main(["index", "--store", str(root), "--model", "birdnet", "--dtype", "i8"]) == 0
    assert capsys.readouterr().out.startswith("index rebuilt")
    assert cli.main(["search", "--store", str(root), "--model", "birdnet", "--query", FILES[1]]) == 0
    assert capsys.readouterr().out.startswith("rank")  # the i8 index kept as it is, not rebuilt as f16
    assert cli.main(["search", "--store", str(root), "--model", "birdnet", "--query", "nowhere.wav"]) == 2
    assert "nowhere.wav" in capsys.readouterr().err
    # without --audio, clips come from the audio folder the store recorded at extraction
    assert cli.main(["search", "--store", str(root), "--model", "birdnet", "--query", f"{FILES[0]}@0", "--k", "2",
                     "--clips", str(tmp_path / "recorded")]) == 0
    assert len(list((tmp_path / "recorded").iterdir())) == 2
