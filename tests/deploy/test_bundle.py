"""birdemb bundle: contents and hashes, run checks, and the Vocalization fused graph (on the
Perch stand-in) agreeing with the two-step path."""
from __future__ import annotations

import json

import numpy as np
import pytest

from birdemb.cli import main
from birdemb.deploy.bundle import BundleError, build_bundle, check_frames, fused_disagreement
from birdemb.deploy.submit import write_submission
from birdemb.runtime.audio import WindowLayout
from birdemb.runtime.bundle_format import load_bundle
from birdemb.runtime.hashing import sha256_file
from birdemb.runtime.head import HeadWeights, load_head, save_head
from birdemb.runtime.interpreter import TFLiteRunner
from birdemb.training import rundir
from birdemb.training.rundir import RunError
from tests.helpers.audio import write_audio
from tests.helpers.runs import SPECIES, make_birdnet_run, read_submission


def test_bundle_holds_what_inference_needs_with_hashes(tmp_path, capsys):
    run = make_birdnet_run(tmp_path / "run", hidden=8)
    assert main(["bundle", "--run", str(run), "--out", str(tmp_path / "b")]) == 0
    assert "5 species" in capsys.readouterr().out
    bundle = tmp_path / "b"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert set(manifest["files"]) == {"backbone.tflite", "front_end.npz", "network.tflite", "head.npz", "species.json",
                                      "config.json", "kaggle_submit.py"}
    assert (manifest["backbone"]["front_end"], manifest["backbone"]["network"]) == ("front_end.npz", "network.tflite")
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest
    assert json.loads((bundle / "species.json").read_text()) == SPECIES
    assert manifest["layout"]["frame_offsets_s"] == [0.0, 2.0] and manifest["backbone"]["model"] == "birdnet"
    assert manifest["head_layers"] == [[8, 1024], [5, 8]] and manifest["fused"] is None
    # the recorded output is the 1024-d embedding (BirdNET's first output is its 6,522 logits)
    outputs = TFLiteRunner(bundle / "backbone.tflite").run(np.zeros((1, 144000), np.float32))
    assert outputs[manifest["backbone"]["embedding_output"]].shape == (1, 1024)
    assert "logits_output" not in manifest["backbone"]  # a plain head reads the embedding only
    for saved, original in zip(load_head(bundle).layers, load_head(run).layers):
        np.testing.assert_array_equal(saved[0], original[0])
    with pytest.raises(BundleError, match="exists"):
        build_bundle(run, bundle)
    assert build_bundle(run, bundle, overwrite=True) == bundle.resolve()


def test_bundle_refuses_inconsistent_runs(tmp_path):
    run = make_birdnet_run(tmp_path / "run")
    rundir.write_json(run, rundir.SPECIES, SPECIES[:-1])
    with pytest.raises(RunError, match="5 outputs but species.json lists 4"):
        build_bundle(run, tmp_path / "b1")
    run = make_birdnet_run(tmp_path / "run2")
    config = rundir.read_json(run, rundir.CONFIG)
    config["backbone"]["weights_sha256"] = "0" * 64
    rundir.write_json(run, rundir.CONFIG, config)
    with pytest.raises(BundleError, match="not the ones the run was trained on"):
        build_bundle(run, tmp_path / "b2")
    with pytest.raises(BundleError, match="source graph"):
        build_bundle(make_birdnet_run(tmp_path / "run3"), tmp_path / "b3", fused=True)
    assert not list(tmp_path.glob(".b*"))  # no half-written bundle left behind


def test_vocalization_fused_graph_agrees_with_two_step(tmp_path, monkeypatch):
    """Backbone + head (adding the model's own logits for three species of a species subset)
    + sigmoid as one TFLite graph, from the stand-in SavedModel."""
    pytest.importorskip("tensorflow", reason="building the fused graph needs TensorFlow")
    from birdemb.backbones.vocalization import Vocalization
    from tests.helpers.standins import build_perch_standin

    monkeypatch.setenv("BIRDEMB_CACHE", str(tmp_path / "cache"))
    weights = build_perch_standin(tmp_path / "perch")
    backbone = Vocalization(weights=weights)
    rng = np.random.default_rng(3)
    layers = [((rng.standard_normal((16, 1280)) / 10).astype(np.float32), (0.1 * rng.standard_normal(16)).astype(np.float32)),
              ((rng.standard_normal((4, 16)) / 2).astype(np.float32), (0.1 * rng.standard_normal(4)).astype(np.float32))]
    run = tmp_path / "run"
    run.mkdir()
    save_head(run, layers, np.array([0, -1, 2, 3]))  # columns of the stored (subset) labels
    rundir.write_json(run, rundir.SPECIES, SPECIES[:4])
    rundir.write_json(run, rundir.CONFIG, {
        "embeddings": "vocalization", "layout": WindowLayout(5.0, 5.0, 32000, 1.0).describe(),
        "backbone": {"model": "vocalization", "version": "4", "weights_sha256": backbone.weights_sha256,
                     "options": {"species": SPECIES[:4]}},
    })
    bundle = build_bundle(run, tmp_path / "bundle", weights=weights)
    manifest = json.loads((bundle / "bundle.json").read_text())
    # the subset's columns in the graph's full logits output, found by label name
    model_labels = backbone.model_labels
    assert manifest["backbone"]["logit_columns"] == [model_labels.index(s) for s in SPECIES[:4]]
    assert manifest["head_adds_backbone_logits"]
    assert manifest["fused"] == "fused.tflite" and "fused.tflite" in manifest["files"]
    assert manifest["fused_check"]["max_abs_difference"] <= 1e-5

    # independently of the build-time check: fused vs two-step on other frames, to 1e-5
    frames = check_frames(160000, 32000, seed=11) * 0.7
    head = load_head(run)
    assert fused_disagreement(bundle / "fused.tflite", bundle / "backbone.tflite", manifest["backbone"], head,
                              frames) <= 1e-5
    plain = HeadWeights(head.layers)  # and the logits really are in it: without them it differs
    assert fused_disagreement(bundle / "fused.tflite", bundle / "backbone.tflite", manifest["backbone"], plain,
                              frames) > 1e-3
    fused = TFLiteRunner(bundle / "fused.tflite").run(frames)[0]
    assert fused.shape == (4, 4) and fused.std() > 1e-3

    # and through the whole submission: both engines, same file
    write_audio(tmp_path / "audio" / "x.wav", 17.0, 32000, seed=4)
    write_submission(bundle, tmp_path / "audio", tmp_path / "two.csv", workers=1)
    write_submission(bundle, tmp_path / "audio", tmp_path / "fused.csv", workers=1, engine="fused", sliding=True)
    write_submission(bundle, tmp_path / "audio", tmp_path / "two_sliding.csv", workers=1, sliding=True)
    _, ids, two = read_submission(tmp_path / "two.csv")
    _, _, fused_sliding = read_submission(tmp_path / "fused.csv")
    _, _, two_sliding = read_submission(tmp_path / "two_sliding.csv")
    assert ids == ["x_5", "x_10", "x_15", "x_20"] and load_bundle(bundle).fused_file
    np.testing.assert_allclose(fused_sliding, two_sliding, atol=1e-5)
    assert not np.allclose(two, two_sliding, atol=1e-4)
