"""birdemb submit: rows against durations, columns against a sample_submission, probabilities
against the two-step numpy computation, post-processing by hand, ensembles, the Kaggle script."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from birdemb.backbones.birdnet import BirdNET
from birdemb.cli import main
from birdemb.deploy.bundle import build_bundle
from birdemb.deploy.submit import write_submission
from birdemb.runtime.audio import WindowLayout, load_audio
from birdemb.runtime.bundle_format import SubmitError, load_bundle
from birdemb.runtime.head import load_head
from birdemb.runtime.postprocess import global_correction, power_mean, sliding_blend
from birdemb.runtime.submission import SubmitWarning, row_ids
from birdemb.training import rundir
from tests.helpers.audio import tone, write_audio, write_ogg
from tests.helpers.paths import REPOSITORY
from tests.helpers.runs import SPECIES, make_birdnet_run, read_submission

ROOT = REPOSITORY
RESIDUAL = [10, -1, 2000, 6000, -1]  # BirdNET label columns


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bundles")
    return {
        "deep": build_bundle(make_birdnet_run(root / "run_deep", hidden=16, seed=1), root / "deep"),
        # adds BirdNET's own logits for three species (a residual head, train-head's default)
        "linear": build_bundle(make_birdnet_run(root / "run_linear", seed=2, residual=RESIDUAL), root / "linear"),
    }


def birdnet_two_step(path: Path, head) -> np.ndarray:
    """The pipeline by hand: 48 kHz audio, 3 s frames at +0/+2 s of each 5 s window (a frame
    starting past the end is left out), mean embedding, dense/ReLU/dense, + the max of the
    frames' BirdNET logits where the head adds them, sigmoid."""
    audio = load_audio(path, 48000)
    n_windows = len(audio) // 240000 + int(len(audio) % 240000 >= 48000)
    padded = np.pad(audio, (0, 10 * 48000))
    embedder = BirdNET()
    rows, logit_rows = [], []
    for k in range(n_windows):
        starts = [s for s in (k * 240000, k * 240000 + 96000) if s == k * 240000 or s < len(audio)]
        emb, logits = embedder.embed(np.stack([padded[s : s + 144000] for s in starts]))
        rows.append(emb.mean(axis=0))
        logit_rows.append(logits.max(axis=0))
    h = np.stack(rows).astype(np.float64)
    for i, (w, b) in enumerate(head.layers):
        h = h @ w.T.astype(np.float64) + b
        if i < len(head.layers) - 1:
            h = np.maximum(h, 0)
    if head.residual is not None:
        for j, column in enumerate(head.residual):
            if column >= 0:
                h[:, j] += np.stack(logit_rows)[:, column]
    return 1 / (1 + np.exp(-h))


# ---------------------------------------------------------------- pure post-processing


def test_sliding_blend_by_hand():
    p = np.array([[0.8], [0.4], [0.2]])
    shifted = np.array([[0.6], [0.0]])  # windows starting at 2.5 s and 7.5 s; none at 12.5 s
    # k=0: no window at -2.5 s: (0.5*0.8 + 0.25*0.6) / 0.75; k=1: all three; k=2: only the one before
    expected = [(0.4 + 0.15) / 0.75, 0.5 * 0.4 + 0.25 * 0.6 + 0.25 * 0.0, (0.1 + 0.0) / 0.75]
    np.testing.assert_allclose(sliding_blend(p, shifted)[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(sliding_blend(p, shifted[:0]), p, rtol=1e-6)  # no shifted windows: p itself


def test_global_correction_by_hand():
    p = np.array([[0.2, 0.6, 0.5], [0.4, 0.1, 0.3]], dtype=np.float32)
    # species 1 peaks above 0.5: x1.3 in every row; species 2 peaks at exactly 0.5: unchanged
    np.testing.assert_allclose(global_correction(p), [[0.2, 0.78, 0.5], [0.4, 0.13, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(global_correction(p, threshold=0.3, factor=2.0), [[0.4, 1.2, 1.0], [0.8, 0.2, 0.6]], rtol=1e-6)


def test_power_mean_by_hand():
    a, b = np.array([[0.0, 0.6]]), np.array([[0.8, 0.8]])
    np.testing.assert_allclose(power_mean([a, b]), [[np.sqrt(0.32), np.sqrt(0.5)]], rtol=1e-6)


def test_row_ids_follow_the_contract():
    assert row_ids("1000170626", 3) == ["1000170626_5", "1000170626_10", "1000170626_15"]


# ---------------------------------------------------------------- the submission file


def test_rows_match_durations_columns_match_sample_submission(bundles, tmp_path):
    audio = tmp_path / "soundscapes"
    write_ogg(audio / "b_full.ogg", 240.0, 32000, seed=1)  # a competition soundscape: 48 rows
    write_audio(audio / "a_short.wav", 12.4, 44100, seed=2)  # 2 full windows + 2.4 s: 3 rows
    write_audio(audio / "c_tail.flac", 10.5, 48000, seed=3)  # 2 full windows + 0.5 s (< 1 s): 2 rows
    write_audio(audio / "d_tiny.wav", 3.0, 32000, seed=4)  # less than a window: still 1 row
    (audio / "e_corrupt.ogg").write_bytes(b"OggS not really" * 100)  # unreadable: nominal 240 s
    (audio / "f_empty.ogg").write_bytes(b"")  # 0 bytes: nominal 240 s
    sf.write(audio / "g_header_only.wav", np.zeros((0, 1), np.float32), 32000)  # 0 samples: nominal
    sf.write(audio / "h_nan.wav", np.full((32000 * 20, 1), np.nan, np.float32), 32000, subtype="FLOAT")  # 20 s: 4 rows
    (audio / "notes.txt").write_text("not audio")
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("row_id," + ",".join(SPECIES) + "\n")

    with pytest.warns(SubmitWarning) as caught:
        summary = write_submission(bundles["linear"], audio, tmp_path / "submission.csv", workers=2, default_prob=0.25)
    header, ids, values = read_submission(tmp_path / "submission.csv")

    assert header == next(csv.reader(sample.open()))
    expected_rows = {"a_short": 3, "b_full": 48, "c_tail": 2, "d_tiny": 1, "e_corrupt": 48, "f_empty": 48,
                     "g_header_only": 48, "h_nan": 4}
    assert ids == [rid for stem, n in expected_rows.items() for rid in row_ids(stem, n)]  # sorted by file
    assert ids[3:5] == ["b_full_5", "b_full_10"] and ids[50] == "b_full_240"
    assert summary.rows == len(ids) == sum(expected_rows.values()) and summary.files == 8
    failed = {"e_corrupt.ogg", "f_empty.ogg", "g_header_only.wav", "h_nan.wav"}
    assert set(summary.failures) == failed and len(caught) == 4
    is_default = np.array([rid.rsplit("_", 1)[0] in {Path(f).stem for f in failed} for rid in ids])
    assert np.all(values[is_default] == 0.25)
    assert np.all((values[~is_default] > 0) & (values[~is_default] < 1)) and not np.all(values[~is_default] == 0.25)


@pytest.mark.parametrize("name", ["deep", "linear"])
def test_probabilities_equal_the_two_step_numpy_path(bundles, tmp_path, name):
    audio = tmp_path / "audio"
    write_audio(audio / "x.flac", 12.4, 44100, channels=2, seed=5, freq=2500)
    write_submission(bundles[name], audio, tmp_path / "s.csv", workers=1)
    _, ids, values = read_submission(tmp_path / "s.csv")
    head = load_head(bundles[name])
    assert (head.residual is not None) == (name == "linear")
    expected = birdnet_two_step(audio / "x.flac", head)
    assert ids == ["x_5", "x_10", "x_15"]
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert values.std() > 0.01  # a head that gives constant output would prove nothing


def test_sliding_blends_the_file_with_its_own_shifted_copy(bundles, tmp_path):
    """Shifted windows are the windows of the same audio started 2.5 s later."""
    rate = 48000
    signal = tone(17.0, rate, seed=6, freq=3500)[:, 0]
    plain, shifted = tmp_path / "plain", tmp_path / "shifted"
    plain.mkdir(), shifted.mkdir()
    sf.write(plain / "x.wav", signal, rate, subtype="FLOAT")
    sf.write(shifted / "x.wav", signal[int(2.5 * rate) :], rate, subtype="FLOAT")  # 14.5 s: 3 windows
    write_submission(bundles["linear"], plain, tmp_path / "p.csv", workers=1)
    write_submission(bundles["linear"], shifted, tmp_path / "q.csv", workers=1)
    write_submission(bundles["linear"], plain, tmp_path / "s.csv", workers=1, sliding=True)
    p, q, s = (read_submission(tmp_path / f"{n}.csv")[2] for n in "pqs")
    assert len(p) == 4 and len(q) == 3  # 17 s: windows at 0, 5, 10, 15 (2 s)
    np.testing.assert_allclose(s, sliding_blend(p, q), atol=2e-6)
    assert not np.allclose(s, p, atol=1e-3)


def test_global_correction_and_ensemble_in_the_file(bundles, tmp_path):
    audio = tmp_path / "audio"
    write_audio(audio / "x.wav", 16.0, 48000, seed=7)
    write_audio(audio / "y.wav", 6.0, 48000, seed=8, freq=5000)
    for name in ("deep", "linear"):
        write_submission(bundles[name], audio, tmp_path / f"{name}.csv", workers=1)
    write_submission([bundles["deep"], bundles["linear"]], audio, tmp_path / "ens.csv", workers=1)
    write_submission([bundles["deep"], bundles["linear"]], audio, tmp_path / "ens_gc.csv", workers=1,
                     global_correction=True, correction_threshold=0.4, correction_factor=1.5)
    deep, linear, ens, ens_gc = (read_submission(tmp_path / f"{n}.csv")[2] for n in ("deep", "linear", "ens", "ens_gc"))
    np.testing.assert_allclose(ens, power_mean([deep, linear]), atol=2e-6)
    x, y = ens[:4], ens[4:]  # file x has 4 rows (16 s), y one
    by_hand = np.concatenate([global_correction(x, 0.4, 1.5), global_correction(y, 0.4, 1.5)])
    np.testing.assert_allclose(ens_gc, by_hand, atol=5e-6)
    assert not np.allclose(ens_gc, ens)  # the correction changed something on this input


def test_ensemble_needs_one_species_order(bundles, tmp_path):
    other = build_bundle(make_birdnet_run(tmp_path / "run", species=SPECIES[::-1]), tmp_path / "reversed")
    write_audio(tmp_path / "audio" / "x.wav", 5.0, 48000)
    with pytest.raises(SubmitError, match="species list differs"):
        write_submission([bundles["linear"], other], tmp_path / "audio", tmp_path / "s.csv")


def test_submit_needs_5_s_windows(tmp_path):
    run = make_birdnet_run(tmp_path / "run")
    config = rundir.read_json(run, rundir.CONFIG)
    config["layout"] = WindowLayout(3.0, 3.0, 48000, 1.0).describe()
    rundir.write_json(run, rundir.CONFIG, config)
    write_audio(tmp_path / "audio" / "x.wav", 5.0, 48000)
    with pytest.raises(SubmitError, match="5 s windows"):
        write_submission(run, tmp_path / "audio", tmp_path / "s.csv")


# ---------------------------------------------------------------- no heavy imports, the Kaggle script


def test_inference_imports_no_torch_tensorflow_polars(bundles, tmp_path):
    write_audio(tmp_path / "audio" / "x.wav", 6.0, 48000)
    code = (
        "import sys\n"
        "from birdemb.runtime.submission import write_submission, BANNED_MODULES\n"
        f"write_submission({str(bundles['linear'])!r}, {str(tmp_path / 'audio')!r}, {str(tmp_path / 's.csv')!r}, workers=1)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in BANNED_MODULES)\n"
        "print('LOADED', loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout and (tmp_path / "s.csv").is_file()


def test_kaggle_script_is_fresh_and_matches_birdemb_submit(bundles, tmp_path):
    from birdemb.deploy import kaggle_script

    script = ROOT / "jobs" / "kaggle_submit.py"
    assert script.read_text() == kaggle_script.generate(), \
        "jobs/kaggle_submit.py is stale: run `python -m birdemb.deploy.kaggle_script`"
    assert (bundles["deep"] / "kaggle_submit.py").read_text() == script.read_text()
    audio = tmp_path / "audio"
    write_audio(audio / "s1.ogg", 22.0, 32000, seed=9)
    write_audio(audio / "s2.wav", 13.0, 44100, seed=10, freq=4500)
    (audio / "s3.ogg").write_bytes(b"broken")
    options = ["--sliding", "--global-correction", "--default-prob", "0.1", "--workers", "2", "--quiet"]
    assert main(["submit", "--bundle", str(bundles["deep"]), "--bundle", str(bundles["linear"]),
                 "--audio", str(audio), "--out", str(tmp_path / "birdemb.csv"), *options]) == 0
    # the script, run from a folder without birdemb, bundle given by the script's own location
    result = subprocess.run(
        [sys.executable, "-I", str(bundles["deep"] / "kaggle_submit.py"), "--bundle", str(bundles["deep"]),
         "--bundle", str(bundles["linear"]), "--audio", str(audio), "--out", str(tmp_path / "kaggle.csv"), *options],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kaggle.csv").read_bytes() == (tmp_path / "birdemb.csv").read_bytes()
    _, ids, _ = read_submission(tmp_path / "kaggle.csv")
    assert len(ids) == 5 + 3 + 48


def test_kaggle_script_never_imports_birdemb_or_heavy_modules(bundles, tmp_path):
    write_audio(tmp_path / "audio" / "x.wav", 6.0, 48000)
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['kaggle_submit.py', '--audio', {str(tmp_path / 'audio')!r}, '--out', {str(tmp_path / 's.csv')!r}, "
        "'--workers', '1', '--quiet']\n"
        f"try:\n    runpy.run_path({str(bundles['linear'] / 'kaggle_submit.py')!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('birdemb', 'torch', 'lightning', 'tensorflow', 'polars'))\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    _, ids, _ = read_submission(tmp_path / "s.csv")  # bundle defaulted to the script's folder
    assert ids == ["x_5", "x_10"]


def test_profile_reports_three_stages(bundles, tmp_path, capsys):
    write_audio(tmp_path / "audio" / "a.wav", 20.0, 32000)
    (tmp_path / "audio" / "b.ogg").write_bytes(b"broken")  # skipped by the profile, not by the submission
    assert main(["submit", "--bundle", str(bundles["linear"]), "--audio", str(tmp_path / "audio"),
                 "--out", str(tmp_path / "s.csv"), "--profile", "2", "--quiet", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    for stage in ("decode only", "backbone only", "backbone + head"):
        assert f"| {stage} |" in out
    assert "projected min, 4 cores" in out and "first 1 soundscape(s)" in out


def test_bundle_is_verified_before_use(bundles, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundles["linear"], copy)
    assert load_bundle(copy).species == tuple(SPECIES)
    with np.load(copy / "head.npz") as data:
        arrays = dict(data)
    arrays["b0"] = arrays["b0"] + 1
    np.savez(copy / "head.npz", **arrays)
    with pytest.raises(SubmitError, match="head.npz does not match its sha256"):
        load_bundle(copy)
