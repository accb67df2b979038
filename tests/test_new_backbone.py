"""A backbone defined only in the tests plugs in whole: extract, train-head --init surrogate,
bundle and submit through the command line, with no change to birdemb."""
from __future__ import annotations

import csv
import json

import numpy as np

from birdemb import store
from birdemb.cli import main
from birdemb.runtime.head import head_logits, load_head, sigmoid
from birdemb.training import rundir
from tests.helpers.audio import write_steady_tone
from tests.helpers.paths import REPOSITORY

TOY = "tests.helpers.toy_backbone:ToyBackbone"


def test_a_backbone_outside_birdemb_goes_from_audio_to_submission(tmp_path):
    audio = tmp_path / "train_audio"
    for k in range(3):  # low tones are norcar, high tones amerob (as the toy's classifier says)
        write_steady_tone(audio / "norcar" / f"XC{k}.wav", 11.0, 16000, 1000, seed=k)
        write_steady_tone(audio / "amerob" / f"XC{10 + k}.wav", 11.0, 22050, 3000, seed=10 + k)
    scapes = tmp_path / "soundscapes"
    write_steady_tone(scapes / "low.wav", 12.0, 32000, 1000, seed=20)
    write_steady_tone(scapes / "high.flac", 9.0, 16000, 3000, seed=21)
    root, run, bundle = tmp_path / "store", tmp_path / "run", tmp_path / "bundle"

    for dataset, folder in (("train", audio), ("scape", scapes)):
        assert main(["extract", "--model", TOY, "--audio", str(folder), "--store", str(root), "--dataset", dataset,
                     "--workers", "1", "--quiet"]) == 0
    assert main(["train-head", "--store", str(root), "--embeddings", "toy", "--surrogate", "toy", "--labels",
                 "species", "--dataset", "train", "--loss", "bce", "--init", "surrogate", "--epochs", "0",
                 "--val-fraction", "0.34", "--out", str(run)]) == 0
    assert main(["bundle", "--run", str(run), "--out", str(bundle)]) == 0
    out = tmp_path / "submission.csv"
    assert main(["submit", "--bundle", str(bundle), "--audio", str(scapes), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0

    # the head adds the toy's own logits and starts at zero: it gives back the stored logits
    species = json.loads((run / rundir.SPECIES).read_text())
    assert species == ["amerob", "norcar"]
    rows = store.scan(root, "toy", "train").collect()
    column = {label: j for j, label in enumerate(store.manifest(root, "toy", "train")["labels"])}
    stored = rows["logits"].to_numpy()[:, [column[s] for s in species]]
    head = load_head(run)
    np.testing.assert_allclose(head_logits(head, rows["embedding"].to_numpy(), rows["logits"].to_numpy()), stored,
                               atol=1e-4)
    np.testing.assert_array_equal(head.residual, [column[s] for s in species])
    assert json.loads((bundle / "bundle.json").read_text())["backbone"]["entry"] == TOY

    # the submission (decode + the toy's .tflite + head in one pass) equals the stored windows
    with open(out, newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["row_id", *species]
    submitted = {r[0]: np.asarray(r[1:], dtype=np.float64) for r in table[1:]}
    scape = store.scan(root, "toy", "scape").sort("file", "window").collect()
    for file, window, logits in zip(scape["file"], scape["window"], scape["logits"].to_numpy()):
        row_id = f"{file.rsplit('.', 1)[0]}_{5 * (window + 1)}"
        expected = sigmoid(logits[[column[s] for s in species]])
        np.testing.assert_allclose(submitted[row_id], expected, rtol=1e-5, atol=1e-6)
    # and it means something: the high tone is amerob, the low tone norcar
    assert submitted["high_5"][0] > submitted["high_5"][1] and submitted["low_5"][1] > submitted["low_5"][0]


def test_birdemb_names_no_test_backbone():
    sources = [p.read_text() for p in (REPOSITORY / "birdemb").rglob("*.py")]
    assert not any("toy_backbone" in text or "ToyBackbone" in text for text in sources)
