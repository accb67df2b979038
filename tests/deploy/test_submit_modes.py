"""Submission modes on real audio (a 20 s excerpt of the xc10 soundscape): the passthrough
bundle against BirdNET's own logits mapped by scientific name, the blend against its
formula, and the location filter through the submit command."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from birdemb.backbones.birdnet import BirdNET
from birdemb.backbones.birdnet_location import species_for_place
from birdemb.cli import main
from birdemb.deploy.bundle import build_bundle
from birdemb.deploy.passthrough import build_passthrough_bundle
from birdemb.deploy.submit import write_submission
from birdemb.runtime.audio import load_audio
from birdemb.runtime.bundle_format import SubmitError
from tests.helpers.runs import make_birdnet_run, read_submission

UNKNOWN = ["zzzfake1", "zzzfake2"]  # codes BirdNET cannot name: passthrough "0" (sigmoid(-inf))
HEARD = {"bkcchi": "Poecile atricapillus", "houfin": "Haemorhous mexicanus"}  # loud in the soundscape, not in xc10
EXCERPT_S = 20


@pytest.fixture(scope="module")
def setup(xc10, tmp_path_factory):
    root = tmp_path_factory.mktemp("modes")
    audio = root / "audio"
    audio.mkdir()
    signal, rate = sf.read(xc10 / "unlabeled_soundscapes" / "soundscape.flac", dtype="float32")
    sf.write(audio / "soundscape.flac", signal[: EXCERPT_S * rate], rate)
    with open(xc10 / "train_metadata.csv", newline="") as handle:
        names = {row["primary_label"]: row["scientific_name"] for row in csv.DictReader(handle)}
    species = [*sorted(names)[:5], UNKNOWN[0], *sorted(names)[5:], *HEARD, UNKNOWN[1]]
    names.update(HEARD)
    sample = root / "sample_submission.csv"
    sample.write_text("row_id," + ",".join(species) + "\n")
    taxonomy = xc10 / "eBird_Taxonomy_v2021.csv"
    passthrough, _ = build_passthrough_bundle("birdnet", sample, root / "passthrough", taxonomy=taxonomy)
    head = build_bundle(make_birdnet_run(root / "run", species=species, seed=4), root / "head", taxonomy=taxonomy)
    residual = build_bundle(make_birdnet_run(root / "run_res", species=species, seed=5,
                                             residual=[3, -1, 100, -1, 7, -1, 5000, -1, -1, -1, -1, 20, -1, -1]),
                            root / "residual", taxonomy=taxonomy)
    return {"root": root, "audio": audio, "species": species, "names": names, "taxonomy": taxonomy,
            "passthrough": passthrough, "head": head, "residual": residual}


@pytest.fixture(scope="module")
def birdnet_probabilities(setup) -> np.ndarray:
    """BirdNET's own probabilities per 5 s window for the species, by hand: its labels found by
    scientific name (from the metadata, not the taxonomy), max of the logits of the 0 s and 2 s
    frames, sigmoid; the unknown codes get NaN."""
    audio = load_audio(setup["audio"] / "soundscape.flac", 48000)
    backbone = BirdNET()
    frames = np.stack([audio[s: s + 144000] for k in range(EXCERPT_S // 5) for s in (k * 240000, k * 240000 + 96000)])
    _, logits = backbone.embed(frames)
    window_logits = np.maximum(logits[0::2], logits[1::2])
    columns = {label.split("_", 1)[0]: i for i, label in enumerate(backbone.labels)}
    out = np.full((len(window_logits), len(setup["species"])), np.nan)
    for j, code in enumerate(setup["species"]):
        if code in setup["names"]:
            out[:, j] = 1 / (1 + np.exp(-window_logits[:, columns[setup["names"][code]]].astype(np.float64)))
    return out


def submit(setup, name, bundle, **options) -> np.ndarray:
    """The submission of `bundle` with `options`, written once per `name` (tests share them)."""
    if not (setup["root"] / name).is_file():
        write_submission(setup[bundle] if isinstance(bundle, str) else bundle, setup["audio"], setup["root"] / name,
                         workers=1, **options)
    header, ids, values = read_submission(setup["root"] / name)
    assert header == ["row_id", *setup["species"]] and len(ids) == EXCERPT_S // 5
    return values


def test_passthrough_equals_birdnet_own_probabilities(setup, birdnet_probabilities):
    values = submit(setup, "passthrough.csv", "passthrough")
    known = np.isfinite(birdnet_probabilities[0])
    assert known.sum() == 12
    np.testing.assert_allclose(values[:, known], birdnet_probabilities[:, known], atol=1e-5)
    assert values[:, known].max() > 0.3  # a chickadee and a finch are heard
    assert np.all(values[:, ~known] < 1e-30)  # species BirdNET lacks: sigmoid(-inf), "0"
    manifest = json.loads((setup["passthrough"] / "bundle.json").read_text())
    assert manifest["head_layers"] == [[14, 1024]] and manifest["passthrough"]["matched"] == 12


def test_blend_is_the_weighted_mean_of_head_and_passthrough(setup, birdnet_probabilities):
    head = submit(setup, "head.csv", "head")
    passthrough = submit(setup, "passthrough.csv", "passthrough")
    known = np.isfinite(birdnet_probabilities[0])
    blend = submit(setup, "blend0.5.csv", "head", blend=0.5)
    np.testing.assert_allclose(blend[:, known], 0.5 * head[:, known] + 0.5 * passthrough[:, known], atol=2e-6)
    np.testing.assert_allclose(blend[:, ~known], head[:, ~known], atol=1e-7)  # unknown species: the head alone
    assert not np.allclose(head[:, known], passthrough[:, known], atol=0.05)  # so the blend proves something
    np.testing.assert_allclose(submit(setup, "blend0.csv", "head", blend=0.0)[:, known], passthrough[:, known],
                               atol=2e-6)
    submit(setup, "blend1.csv", "head", blend=1.0)
    assert (setup["root"] / "blend1.csv").read_bytes() == (setup["root"] / "head.csv").read_bytes()


def test_blend_with_a_residual_head_and_sliding(setup):
    """The head's residual logits and the passthrough read one pooled logits output."""
    residual = submit(setup, "res.csv", "residual", sliding=True)
    passthrough = submit(setup, "pt_sliding.csv", "passthrough", sliding=True)
    blend = submit(setup, "res_blend.csv", "residual", sliding=True, blend=0.7)
    known = passthrough[0] > 1e-30
    np.testing.assert_allclose(blend[:, known], 0.7 * residual[:, known] + 0.3 * passthrough[:, known], atol=2e-6)


def test_blend_is_refused_when_it_cannot_be_computed(setup, tmp_path):
    no_taxonomy = build_bundle(make_birdnet_run(tmp_path / "run", species=setup["species"]), tmp_path / "b")
    manifest = json.loads((no_taxonomy / "bundle.json").read_text())
    assert "taxonomy" in manifest["passthrough"]["missing"]
    assert submit(setup, "plain.csv", no_taxonomy).shape == (EXCERPT_S // 5, 14)  # without a blend: as before
    with pytest.raises(SubmitError, match="no passthrough columns"):
        submit(setup, "x1.csv", no_taxonomy, blend=0.5)
    with pytest.raises(SubmitError, match="between 0 and 1"):
        submit(setup, "x2.csv", "head", blend=1.5)
    with pytest.raises(SubmitError, match="two-step"):
        submit(setup, "x3.csv", "head", blend=0.5, engine="fused")


def test_kaggle_script_blends_like_birdemb_submit(setup, tmp_path):
    out = tmp_path / "kaggle.csv"
    result = subprocess.run(
        [sys.executable, "-I", str(setup["head"] / "kaggle_submit.py"), "--audio", str(setup["audio"]),
         "--out", str(out), "--blend", "0.5", "--workers", "1", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    submit(setup, "blend0.5.csv", "head", blend=0.5)
    assert out.read_bytes() == (setup["root"] / "blend0.5.csv").read_bytes()


def test_cli_passthrough_bundle_and_location_filter(setup, tmp_path, capsys):
    bundle = tmp_path / "pt"
    assert main(["bundle", "--passthrough", "--model", "birdnet", "--species", str(setup["root"] / "sample_submission.csv"),
                 "--taxonomy", str(setup["taxonomy"]), "--out", str(bundle)]) == 0
    assert "12 of 14 species found" in capsys.readouterr().out
    plain = submit(setup, "cli_plain.csv", bundle)
    lat, lon, week = -33.9, 151.2, 40  # Sydney in October: few of the Californian xc10 birds
    out = tmp_path / "filtered.csv"
    assert main(["submit", "--bundle", str(bundle), "--audio", str(setup["audio"]), "--out", str(out), "--workers", "1",
                 "--lat", str(lat), "--lon", str(lon), "--week", str(week), "--taxonomy", str(setup["taxonomy"])]) == 0
    printed = capsys.readouterr().out
    expected = {s.scientific_name.lower() for s in species_for_place(lat, lon, week)}
    keep = np.array([code not in setup["names"] or setup["names"][code].lower() in expected
                     for code in setup["species"]])
    assert 0 < keep.sum() < len(keep) - 2
    _, _, filtered = read_submission(out)
    np.testing.assert_array_equal(filtered[:, ~keep], 0.0)  # exactly the unexpected species: 0
    np.testing.assert_array_equal(filtered[:, keep], plain[:, keep])  # the rest untouched
    assert f"keeps {keep.sum()} of 14 labels (1 file(s))" in printed
    assert "2 of 14 labels could not be matched by scientific name (2 kept" in printed
    assert "species masked in 1" in printed
