"""Annotations as labels and as ground truth, and `birdemb evaluate` against them: a toy
corpus whose calls are known to the second (time-stamped events in a plain CSV)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from birdemb.cli import main
from birdemb.training.config import DataOptions, LabelOptions
from birdemb.training.evaluate import evaluate

TOY = "tests.helpers.toy_backbone:ToyBackbone"
RATE = 16000


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """Eight 20 s recordings of quiet noise with 3 kHz calls (amerob) in some 5 s windows and
    1 kHz calls (norcar) in others, and the events as file,start_s,end_s,label."""
    root = tmp_path_factory.mktemp("annotated")
    audio, rows = root / "audio", ["file,start_s,end_s,label"]
    audio.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(5 * RATE) / RATE
    for k in range(8):
        signal = 0.02 * rng.standard_normal(20 * RATE)
        for window, (freq, code) in enumerate([(3000, "amerob"), (None, None), (1000, "norcar"), (None, None)][k % 2:]
                                              + [(3000, "amerob")] * (k % 2)):
            if freq is None:
                continue
            start = window * 5
            signal[start * RATE:(start + 5) * RATE] += 0.3 * np.sin(2 * np.pi * (freq + 5 * k) * t)
            rows.append(f"rec{k}.wav,{start + 0.2:.1f},{start + 4.8:.1f},{code}")
        sf.write(audio / f"rec{k}.wav", signal.astype(np.float32), RATE)
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    (root / "species.txt").write_text("amerob\nnorcar\n")
    store = root / "store"
    assert main(["extract", "--model", TOY, "--audio", str(audio), "--store", str(store), "--dataset", "rec",
                 "--workers", "1", "--quiet"]) == 0
    return root


def test_annotations_train_a_head_and_evaluate_scores_it_against_them(annotated, tmp_path):
    common = ["--store", str(annotated / "store"), "--embeddings", "toy", "--surrogate", "toy",
              "--species-list", str(annotated / "species.txt"), "--annotations", str(annotated / "annotations.csv")]
    run = tmp_path / "run"
    assert main(["train-head", *common, "--labels", "annotations", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["truth"] == "annotations" and metrics["counts"]["windows"] == 32
    assert metrics["val_macro_auroc"] > 0.95  # calls against the gaps between them, in time

    report = tmp_path / "report"
    assert main(["evaluate", "--run", str(run), "--out", str(report)]) == 0
    result = json.loads((report / "evaluation.json").read_text())
    assert result["truth"] == "annotations"
    head, passthrough = result["results"]["head"], result["results"]["passthrough"]
    assert head["windows"]["macro_auroc"] == pytest.approx(metrics["val_macro_auroc"])
    assert set(head["windows"]) >= {"macro_auroc", "padded_cmap", "macro_f1", "per_species"}
    assert "files" in head and passthrough["windows"]["macro_auroc"] is not None
    assert (report / "roc_pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "padded cmAP" in (report / "evaluation.md").read_text()


def test_passthrough_alone_on_every_annotated_file(annotated):
    data = DataOptions(str(annotated / "store"), "toy", "toy", species_list=str(annotated / "species.txt"))
    labels = LabelOptions(scheme="pseudo", annotations=str(annotated / "annotations.csv"))
    result = evaluate(data, labels, all_files=True)
    assert result["val_windows"] == 32 and result["head"] is None
    # the toy's classifier knows both tones: passthrough ranks calls above the gaps
    assert result["results"]["passthrough"]["windows"]["macro_auroc"] > 0.95
