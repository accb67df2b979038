"""BirdNET with int8 weights (`precision="int8"`): the rewrite, its agreement with FP32 on real
audio, and that stores record the precision and never mix two."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from birdemb import store
from birdemb.backbones.base import BackboneError
from birdemb.backbones.birdnet import BirdNET
from birdemb.backbones.tflite_graph import _load, _op_name, _schema
from birdemb.backbones.tflite_quantize import symmetric_int8
from birdemb.extract.job import ExtractConfig, extract
from birdemb.runtime.audio import load_audio
from birdemb.runtime.head import sigmoid
from tests.helpers.audio import write_audio

# measured on the xc10 soundscape and train clips (jobs/bench_int8.py): max |delta p| 0.04-0.075,
# embedding cosine >= 0.998; the bounds leave room for other frames, not for a broken rewrite
MAX_PROBABILITY_GAP = 0.08
MIN_COSINE = 0.995


@pytest.fixture(scope="module")
def models():
    return BirdNET(), BirdNET(precision="int8")


def test_symmetric_int8_rounds_each_channel_to_its_own_scale():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 3, 3, 4)).astype(np.float32) * np.array([1, 10, 0.1, 3, 0], np.float32)[:, None, None,
                                                                                                       None]
    q, scale = symmetric_int8(weight, axis=0)
    assert q.dtype == np.int8 and scale.shape == (5,)
    peak = np.abs(weight).reshape(5, -1).max(1)
    np.testing.assert_allclose(scale[:4], peak[:4] / 127, rtol=1e-6)
    assert scale[4] == 1.0 and not q[4].any()  # an all-zero channel stays zero
    assert (np.abs(q[:4]).reshape(4, -1).max(1) == 127).all()
    # round to nearest: every weight within half a step of its int8 value
    assert (np.abs(q * scale[:, None, None, None] - weight) <= scale[:, None, None, None] / 2 + 1e-7).all()


def test_int8_file_holds_int8_weights_with_the_front_end_float(models):
    fp32, int8 = models
    schema = _schema()
    model = _load(int8.model_path.read_bytes())
    graph = model.subgraphs[0]
    kinds = {}
    for op in graph.operators:
        kind = _op_name(model, op)
        if kind in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            weight = graph.tensors[int(op.inputs[1])]
            name, shape = weight.name.decode(), [int(d) for d in weight.shape]
            quantised = weight.type == schema.TensorType.INT8
            kinds.setdefault(kind, []).append(quantised)
            if quantised:
                assert len(weight.quantization.scale) == shape[0]  # one scale per output channel
                assert len(model.buffers[weight.buffer].data) == np.prod(shape)  # one byte per weight
            pointwise = kind == "FULLY_CONNECTED" or shape[1:3] == [1, 1]
            assert quantised == (pointwise and "MEL_SPEC" not in name), name
    assert sum(kinds["FULLY_CONNECTED"]) == 1  # the classifier; the two mel filterbanks stay float
    assert sum(kinds["CONV_2D"]) > 40 and not any(kinds["DEPTHWISE_CONV_2D"])
    assert int8.model_path.stat().st_size < 0.45 * fp32.model_path.stat().st_size


def test_int8_agrees_with_fp32_on_the_real_soundscape(models, xc10):
    audio = load_audio(xc10 / "unlabeled_soundscapes" / "soundscape.flac", 48_000)
    frames = audio[: 8 * 144_000].reshape(8, 144_000)  # the first 24 s, eight 3 s frames
    (e0, l0), (e1, l1) = (model.embed(frames) for model in models)
    assert l1.shape == l0.shape == (8, 6522) and e1.shape == e0.shape == (8, 1024)
    gap = np.abs(sigmoid(l0) - sigmoid(l1))
    assert 0 < gap.max() < MAX_PROBABILITY_GAP  # not the FP32 model again, and close to it
    cosine = (e0 * e1).sum(1) / (np.linalg.norm(e0, axis=1) * np.linalg.norm(e1, axis=1))
    assert cosine.min() > MIN_COSINE
    # the top species of each frame stays among int8's top three
    top3 = np.argsort(-l1, axis=1)[:, :3]
    assert all(l0[k].argmax() in top3[k] for k in range(len(frames)))


def test_precision_is_an_extract_option_and_is_checked():
    [option] = [o for o in BirdNET.cli_options if o.flag == "--precision"]
    assert option.choices == ("fp32", "int8")
    assert BirdNET.options_from_args(argparse.Namespace(precision="int8")) == {"precision": "int8"}
    assert BirdNET.options_from_args(argparse.Namespace(precision=None)) == {}
    with pytest.raises(BackboneError, match="precision 'int16'"):
        BirdNET(precision="int16")


def test_manifest_records_the_precision_and_a_store_refuses_mixing(tmp_path, models):
    audio = tmp_path / "audio"
    write_audio(audio / "a.wav", 4.0, 48000, seed=1)

    def run(precision):
        extract(ExtractConfig(audio=str(audio), store=str(tmp_path / "store"), model="birdnet", dataset="d",
                              workers=1, progress=False, model_options={"precision": precision}))

    run("int8")
    manifest = store.manifest(tmp_path / "store", "birdnet", "d")
    assert manifest["options"] == {"precision": "int8"} == manifest["parameters"]["options"]
    assert manifest["weights_sha256"] == models[0].weights_sha256  # the same source weights, rewritten
    with pytest.raises(store.StoreError, match="other parameters"):
        run("fp32")
