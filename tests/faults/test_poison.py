"""Poison in, no poison out: a NaN in one stored window is named and left out (or refused),
degenerate labels and options are one-line errors, metrics.json stays valid JSON, no head
with a non-finite weight is written, loaded or bundled, and a file whose scores come out
non-finite gets default rows in the submission, never `nan`."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from birdemb.cli import main
from birdemb.deploy.bundle import build_bundle
from birdemb.errors import UsageError
from birdemb.runtime.audio import WindowLayout
from birdemb.runtime.head import HEAD, HeadError, load_head, save_head
from birdemb.training import rundir
from birdemb.training.config import DataOptions, TrainConfig
from birdemb.training.fit import train_head
from birdemb.training.windows import BadWindowsWarning
from tests.helpers.audio import write_steady_tone
from tests.helpers.stores import separable_store

SPECIES = ("a", "b", "c", "d")
POISONED = "train/b/f1.wav window 3"  # the window `poisoned_store` spoils


def generated_store(root, n_files: int = 20, windows_per_file: int = 6, dim: int = 16, species=SPECIES,
                    edit=None, seed: int = 0):
    """tests/helpers/stores.py's separable store (every other window holds the call)."""
    return separable_store(root, n_files, windows_per_file, dim, species, seed, edit=edit)


def poison_window(k, embedding, logits):
    if k == 1:
        embedding[3, 2] = np.nan


def drop_window(k, embedding, logits):
    return np.array([0, 1, 2, 4, 5]) if k == 1 else None


STEPS = 3  # L-BFGS steps: enough to move every weight, few enough to keep the tests fast


def config(root, out=None, **flat) -> TrainConfig:
    return TrainConfig(DataOptions(str(root), "gen", "gen"), out=None if out is None else str(out)).with_values(
        steps=STEPS, **flat)


def train_args(root, *extra) -> list[str]:
    return ["train-head", "--store", str(root), "--embeddings", "gen", "--surrogate", "gen", "--labels", "species",
            "--steps", str(STEPS), *extra]


def one_line_error(capsys, code: int, *words: str) -> str:
    """The CLI failed with exit 2 and exactly one line on stderr holding every word."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    return err


# ---------------------------------------------------------------- one NaN in one stored window


def test_a_nan_window_is_named_left_out_and_the_run_equals_one_without_it(tmp_path):
    poisoned = generated_store(tmp_path / "poisoned", edit=poison_window)
    clean = generated_store(tmp_path / "clean", edit=drop_window)  # the same store, that window never stored
    with pytest.warns(BadWindowsWarning, match=f"1 of 120 windows .*{POISONED}: embedding holds NaN"):
        result = train_head(config(poisoned, tmp_path / "run"))
    expected = train_head(config(clean))
    for (w, b), (w0, b0) in zip(result.head.layers, expected.head.layers):
        assert np.isfinite(w).all() and np.isfinite(b).all()
        np.testing.assert_allclose(w, w0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, b0, rtol=1e-5, atol=1e-6)
    counts = json.loads((tmp_path / "run" / rundir.METRICS).read_text())["counts"]
    assert counts["bad_windows"] == 1 and counts["windows"] == 119
    assert all(np.isfinite(w).all() for w, _ in load_head(tmp_path / "run").layers)


def test_nan_and_infinite_logits_are_named_too_and_the_count_caps_the_list(tmp_path):
    def edit(k, embedding, logits):
        if k in (2, 3):
            logits[:, 0] = np.inf if k == 2 else np.nan
    root = generated_store(tmp_path / "store", edit=edit)
    with pytest.warns(BadWindowsWarning) as caught:
        train_head(config(root))
    message = str(caught[0].message)
    assert "12 of 120 windows" in message and "and 9 more" in message
    assert "train/c/f2.wav window 0: surrogate logits hold infinite values" in message


def test_the_cli_warns_in_one_line_and_every_command_gets_the_screen(tmp_path, capsys):
    root = generated_store(tmp_path / "store", edit=poison_window)
    run = tmp_path / "run"
    assert main(train_args(root, "--out", str(run))) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and POISONED in err and "Traceback" not in err
    assert json.loads((run / rundir.METRICS).read_text())["counts"]["bad_windows"] == 1
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bad_windows"] == 1
    assert main(["labels", "--store", str(root), "--embeddings", "gen", "--surrogate", "gen", "--labels", "pseudo",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bad_windows"] == 1 and out["windows"] == 119


def test_on_bad_windows_error_refuses_in_one_line_naming_the_file(tmp_path, capsys):
    root = generated_store(tmp_path / "store", edit=poison_window)
    code = main(train_args(root, "--out", str(tmp_path / "run"), "--on-bad-windows", "error"))
    one_line_error(capsys, code, POISONED, "embedding holds NaN", "--on-bad-windows skip")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- metrics.json is JSON


def _no_constants(name):
    raise AssertionError(f"metrics.json holds {name}, which is not JSON")


def test_metrics_json_writes_undefined_metrics_as_null(tmp_path):
    # one species, a call in every file: at the file level no validation file is a negative,
    # so the file-level AUROC is undefined (NaN in memory)
    root = generated_store(tmp_path / "store", n_files=10, species=("a",))
    result = train_head(config(root, tmp_path / "run"))
    assert math.isnan(result.metrics["files"]["head_macro_auroc"])
    text = (tmp_path / "run" / rundir.METRICS).read_text()
    saved = json.loads(text, parse_constant=_no_constants)
    assert saved["files"]["head_macro_auroc"] is None and saved["files"]["passthrough_macro_auroc"] is None
    assert saved["val_macro_auroc"] == pytest.approx(result.metrics["val_macro_auroc"])


def test_write_json_turns_every_nan_and_infinity_into_null(tmp_path):
    value = {"a": float("nan"), "b": [float("inf"), 1.5, -float("inf")], "c": np.float32("nan"),
             "d": np.array([1.0, np.nan]), "e": {"f": (np.int64(3), None)}}
    path = rundir.write_json(tmp_path, "x.json", value)
    assert json.loads(path.read_text(), parse_constant=_no_constants) == {
        "a": None, "b": [None, 1.5, None], "c": None, "d": [1.0, None], "e": {"f": [3, None]}}


# ---------------------------------------------------------------- degenerate labels and options


def test_out_of_range_threshold_is_one_line(tmp_path, capsys):
    root = generated_store(tmp_path / "store")
    for value in ("2", "0", "-0.5"):
        one_line_error(capsys, main(train_args(root, "--out", str(tmp_path / "run"), "--threshold", value)),
                       "--threshold", "between 0 and 1")
    one_line_error(capsys, main(["evaluate", "--store", str(root), "--embeddings", "gen", "--surrogate", "gen",
                                 "--labels", "species", "--eval-threshold", "1.5"]), "--eval-threshold")


def test_a_model_missing_from_the_store_is_one_line_listing_its_models(tmp_path, capsys):
    root = generated_store(tmp_path / "store")
    one_line_error(capsys, main(train_args(root, "--out", str(tmp_path / "r"), "--embeddings", "missing")),
                   "'missing'", "--embeddings", "its models: gen")
    code = main(["labels", "--store", str(root), "--embeddings", "gen", "--surrogate", "nope", "--labels", "pseudo"])
    one_line_error(capsys, code, "'nope'", "--surrogate", "its models: gen")


def test_labels_without_a_positive_or_without_a_negative_are_one_line(tmp_path, capsys):
    root = generated_store(tmp_path / "store")
    # sigmoid of the surrogate's largest logits stays below 0.9999: no call, no positive anywhere
    code = main(train_args(root, "--out", str(tmp_path / "r"), "--threshold", "0.9999"))
    one_line_error(capsys, code, "no positive label", "--labels species", "--threshold 0.9999")
    single = generated_store(tmp_path / "single", n_files=10, species=("a",))
    code = main(train_args(single, "--out", str(tmp_path / "r2"), "--labels", "folder"))
    one_line_error(capsys, code, "no negative label", "--labels folder")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_a_species_without_a_positive_still_trains(tmp_path):
    root = generated_store(tmp_path / "store", species=("a", "b", "c", "d"))
    species_list = tmp_path / "species.txt"
    species_list.write_text("a\nb\nc\nd\nzzz\n")  # zzz: in the list, never in the store
    m = train_head(config(root, species_list=str(species_list))).metrics
    assert m["per_species_auroc"]["zzz"] is None and m["scored_species"] == 4


# ---------------------------------------------------------------- heads


def _run_dir(path, layers=None, raw: bytes | None = None):
    """A run directory as far as reading its head goes: config, species, head.npz."""
    path.mkdir(parents=True, exist_ok=True)
    rundir.write_json(path, rundir.CONFIG, {"layout": {}, "backbone": {"model": "gen"}})
    rundir.write_json(path, rundir.SPECIES, ["a", "b"])
    if raw is not None:
        (path / HEAD).write_bytes(raw)
    else:
        np.savez(path / HEAD, **{f"{k}{i}": a for i, layer in enumerate(layers) for k, a in zip("Wb", layer)})
    return path


GOOD = [(np.ones((2, 4), np.float32), np.zeros(2, np.float32))]


def test_unreadable_heads_are_head_errors_naming_the_file(tmp_path, capsys):
    good = _run_dir(tmp_path / "good", GOOD)
    assert len(load_head(good).layers) == 1
    whole = (good / HEAD).read_bytes()
    for name, raw in (("empty", b""), ("truncated", whole[: len(whole) // 2]), ("text", b"not a zip at all")):
        run = _run_dir(tmp_path / name, raw=raw)
        with pytest.raises(HeadError, match=rf"{run / HEAD}: not a head.npz \(empty or corrupt"):
            load_head(run)
        with pytest.raises(HeadError, match=rf"{run / HEAD}: not a head.npz"):
            build_bundle(run, tmp_path / f"bundle_{name}")
        assert not (tmp_path / f"bundle_{name}").exists()
    one_line_error(capsys, main(["bundle", "--run", str(tmp_path / "empty"), "--out", str(tmp_path / "b")]),
                   str(tmp_path / "empty" / HEAD), "not a head.npz")


def test_heads_with_nan_weights_no_layers_or_mismatched_shapes_are_refused(tmp_path):
    nan = [(np.ones((2, 4), np.float32), np.array([0.0, np.nan], np.float32))]
    chained = [(np.ones((3, 4), np.float32), np.zeros(3, np.float32)), (np.ones((2, 5), np.float32), np.zeros(2))]
    short_bias = [(np.ones((2, 4), np.float32), np.zeros(3, np.float32))]
    for name, layers, message in (("nan", nan, "b0 holds 1 NaN or infinite weights"), ("none", [], "no layers"),
                                  ("chain", chained, "W1 takes 5 inputs; layer 0 gives 3"),
                                  ("bias", short_bias, r"layer 0 has W0 \(2, 4\) and b0 \(3,\)")):
        run = _run_dir(tmp_path / name, layers)
        with pytest.raises(HeadError, match=message):
            load_head(run)
        with pytest.raises(HeadError, match=message):
            build_bundle(run, tmp_path / f"bundle_{name}")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(HeadError, match="W0 holds 1 NaN"):  # and none is ever written
        save_head(fresh, [(np.array([[np.inf, 1.0]]), np.zeros(1))])
    assert not (fresh / HEAD).exists()


def test_a_diverged_fit_is_refused_and_writes_no_head(tmp_path, monkeypatch):
    from birdemb.training import heads

    real = heads.to_layers

    def diverged(head):
        return [(np.full_like(w, np.nan), b) for w, b in real(head)]

    monkeypatch.setattr(heads, "to_layers", diverged)
    root = generated_store(tmp_path / "store")
    with pytest.raises(UsageError, match="training diverged: the head holds 64 NaN or infinite weights"):
        train_head(config(root, tmp_path / "run"))
    assert not (tmp_path / "run" / HEAD).exists()


# ---------------------------------------------------------------- the submission


TOY = "tests.helpers.toy_backbone:ToyBackbone"


def test_a_file_with_non_finite_scores_gets_default_rows_never_nan(tmp_path, capsys):
    """A finite head whose hidden units overflow float32 on loud 3 kHz audio (inf - inf = NaN)
    but not on quiet noise: the loud file fails like an undecodable one, the quiet one scores."""
    from tests.helpers.toy_backbone import ToyBackbone

    backbone = ToyBackbone()
    run = tmp_path / "run"
    run.mkdir()
    rundir.write_json(run, rundir.CONFIG, {
        "layout": WindowLayout(5.0, backbone.frame_s, backbone.sample_rate, 1.0).describe(),
        "backbone": {"model": "toy", "entry": TOY, "version": backbone.version,
                     "weights_sha256": backbone.weights_sha256, "options": backbone.options()}})
    rundir.write_json(run, rundir.SPECIES, ["norcar", "amerob"])
    w0 = np.zeros((2, 8), np.float32)
    w0[:, 5] = 3e38  # the 3 kHz band's log energy: > 1.2 overflows to +inf, negative gives 0 after ReLU
    save_head(run, [(w0, np.zeros(2, np.float32)), (np.array([[1, -1], [1, -1]], np.float32), np.zeros(2))])
    scapes = tmp_path / "scapes"
    write_steady_tone(scapes / "loud.wav", 10.0, 16000, 3000, seed=1)
    import soundfile as sf

    sf.write(scapes / "quiet.wav", (1e-4 * np.random.default_rng(0).standard_normal(160000)).astype(np.float32),
             16000)
    out = tmp_path / "submission.csv"
    with np.errstate(over="ignore", invalid="ignore"):
        code = main(["submit", "--run", str(run), "--audio", str(scapes), "--out", str(out), "--workers", "1",
                     "--quiet", "--default-prob", "0.25"])
    err = capsys.readouterr().err
    assert code == 0
    assert "loud.wav" in err and "NaN or infinite probabilities" in err and "quiet.wav" not in err
    text = out.read_text()
    assert "nan" not in text.lower() and "inf" not in text.lower()
    rows = {r[0]: [float(v) for v in r[1:]] for r in list(csv.reader(text.splitlines()))[1:]}
    assert rows["loud_5"] == rows["loud_10"] == [0.25, 0.25]  # default rows, as for an undecodable file
    assert rows["quiet_5"] == rows["quiet_10"] == [0.5, 0.5]  # ReLU gave 0: sigmoid(0)
