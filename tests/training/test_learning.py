"""Heads that learn, at every data size, with the defaults: a separable generated problem is
learnt to a validation AUROC near 1; `init=auto` keeps the species the surrogate knows and
learns one it does not; noise and silence score low. On real audio see the quality benchmark."""
from __future__ import annotations

import numpy as np
import pytest

from birdemb.cli import main
from birdemb.runtime.head import head_logits, load_head, sigmoid
from birdemb.training.config import DataOptions, TrainConfig
from birdemb.training.fit import train_head
from birdemb.training.heads import build_head, to_layers
from tests.helpers.audio import write_steady_tone
from tests.helpers.stores import separable_store

TOY = "tests.helpers.toy_backbone:ToyBackbone"


@pytest.mark.parametrize("n_files,windows_per_file", [(20, 5), (400, 10)])
def test_defaults_learn_a_separable_problem_at_any_size(tmp_path, n_files, windows_per_file):
    root = separable_store(tmp_path / "store", n_files, windows_per_file)
    base = TrainConfig(DataOptions(str(root), "gen", "gen"))
    scratch = train_head(base.with_values(init="scratch")).metrics  # learnt from the embeddings alone
    assert scratch["truth"] == "folder labels" and scratch["fit"]["solver"] == "lbfgs"
    # window truth is the folder species on every window (silent ones included), so the
    # ceiling is below 1; at the file level a head that learnt reaches 1
    assert scratch["val_macro_auroc"] > 0.8  # the ceiling is 0.875: half the windows are silent
    assert scratch["files"]["head_macro_auroc"] > 0.99
    # the default adds the surrogate's logits (which call the silent windows negative): it
    # corrects the surrogate, and never ends much below it
    default = train_head(base).metrics
    assert default["residual"] and default["val_macro_auroc"] >= default["passthrough"]["macro_auroc"] - 0.02
    assert default["files"]["head_macro_auroc"] > 0.99


@pytest.mark.parametrize("n_files", [20, 200])
def test_defaults_reach_a_validation_auroc_near_1_on_a_separable_problem(tmp_path, n_files):
    root = separable_store(tmp_path / "store", n_files, 5, silent=False)  # 100 and 1,000 windows
    m = train_head(TrainConfig(DataOptions(str(root), "gen", "gen"))).metrics
    assert m["val_macro_auroc"] > 0.99


def test_adam_with_a_hidden_layer_learns_it_too(tmp_path):
    root = separable_store(tmp_path / "store", 40, 6)
    result = train_head(TrainConfig(DataOptions(str(root), "gen", "gen")).with_values(hidden=64, steps=300))
    assert result.metrics["fit"]["solver"] == "adam" and result.metrics["files"]["head_macro_auroc"] > 0.99


def test_standardisation_is_folded_into_the_exported_layers():
    import torch

    rng = np.random.default_rng(0)
    x = (rng.normal(5, 3, (50, 6)) * np.arange(1, 7)).astype(np.float32)
    for hidden in (0, 8):
        head = build_head(6, 3, hidden)
        head[0].fit(x)
        head.eval()
        with torch.no_grad():
            expected = head(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(head_logits(to_layers(head), x), expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    """The toy backbone over steady tones: norcar (1 kHz) and amerob (3 kHz), which the toy's
    classifier knows, houfin (2 kHz), which it does not, and `noise` and `silence` folders
    (BirdNET-Analyzer's non-event classes: negatives for every species)."""
    root = tmp_path_factory.mktemp("toy")
    audio = root / "train_audio"
    rng = np.random.default_rng(0)
    for k in range(6):
        write_steady_tone(audio / "norcar" / f"n{k}.wav", 10.0, 16000, 1000 + 10 * k, seed=k)
        write_steady_tone(audio / "amerob" / f"a{k}.wav", 10.0, 16000, 3000 + 10 * k, seed=10 + k)
        write_steady_tone(audio / "houfin" / f"h{k}.wav", 10.0, 16000, 2000 + 10 * k, seed=20 + k)
        noise = (0.05 * rng.standard_normal(16000 * 10)).astype(np.float32)
        import soundfile as sf

        (audio / "noise").mkdir(parents=True, exist_ok=True)
        sf.write(audio / "noise" / f"z{k}.wav", noise, 16000)
        (audio / "silence").mkdir(parents=True, exist_ok=True)
        sf.write(audio / "silence" / f"s{k}.wav", noise * (0 if k % 2 else 1e-3), 16000)
    store_dir = root / "store"
    assert main(["extract", "--model", TOY, "--audio", str(audio), "--store", str(store_dir), "--dataset",
                 "train", "--workers", "1", "--quiet"]) == 0
    return store_dir


def test_init_auto_keeps_known_species_and_learns_a_hidden_one(toy_store):
    result = train_head(TrainConfig(DataOptions(str(toy_store), "toy", "toy", val_fraction=0.34), out=None))
    m = result.metrics
    assert m["residual"] and m["residual_species"] == 2  # amerob, norcar add the toy's logit; houfin from scratch
    per_species, passthrough = m["per_species_auroc"], m["passthrough"]["per_species_auroc"]
    for known in ("amerob", "norcar"):
        assert per_species[known] >= passthrough[known]
    assert passthrough["houfin"] is None or passthrough["houfin"] <= 0.5  # the surrogate cannot know it
    assert per_species["houfin"] > 0.95  # the head learnt it


def test_a_default_head_scores_noise_and_silence_low(toy_store, tmp_path):
    run = tmp_path / "run"
    assert main(["train-head", "--store", str(toy_store), "--embeddings", "toy", "--surrogate", "toy",
                 "--labels", "species", "--out", str(run)]) == 0
    from tests.helpers.toy_backbone import ToyBackbone

    rng = np.random.default_rng(5)
    frames = np.stack([0.05 * rng.standard_normal(80000), 0.03 * rng.standard_normal(80000),
                       np.zeros(80000)]).astype(np.float32)
    t = np.arange(80000) / 16000
    calls = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (3005, 2005, 1005)]).astype(np.float32)
    head = load_head(run)
    assert head.residual is not None  # amerob and norcar add the toy's own logits
    quiet = sigmoid(head_logits(head, *ToyBackbone().embed(frames)))  # species: amerob, houfin, norcar
    heard = sigmoid(head_logits(head, *ToyBackbone().embed(calls)))
    assert quiet.max() < 0.5, quiet  # never a detection at the default threshold
    assert (np.diag(heard) > quiet.max(axis=0) + 0.3).all(), (heard, quiet)  # far below each species' own call


def test_the_device_is_cuda_only_where_torch_sees_one():
    import torch

    from birdemb.errors import UsageError
    from birdemb.training.fit import accelerator

    assert accelerator("cpu") == "cpu"
    if torch.cuda.is_available():
        assert accelerator("auto") == accelerator("cuda") == "cuda"
    else:
        assert accelerator("auto") == "cpu"
        with pytest.raises(UsageError, match="CUDA"):
            accelerator("cuda")
