"""The EnCodec backbone with its real 24 kHz architecture and seeded random weights (the
pretrained checkpoint cannot be downloaded here): shapes, code values, the codebook-major
layout, agreement with calling the encodec model directly, checkpoints, and extraction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from birdemb import store
from birdemb.backbones import BackboneError, load_backbone
from birdemb.extract.job import ExtractConfig, extract
from birdemb.runtime.audio import load_audio
from birdemb.runtime.hashing import sha256_file
from tests.helpers.audio import tone, write_audio

SAMPLES = 120_000  # 5 s at 24 kHz


@pytest.fixture(scope="module")
def codes_model():
    return load_backbone("encodec", weights="random", batch=2)  # 1.5 kbps codes, the defaults


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Three different 5 s windows at 24 kHz: two tones and noise."""
    rows = [tone(5.0, 24000, freq=1500, seed=1)[:, 0], 0.5 * tone(5.0, 24000, freq=4000, seed=2)[:, 0],
            0.1 * np.random.default_rng(3).standard_normal(SAMPLES)]
    return np.stack(rows).astype(np.float32)


def direct_codes(model, audio: np.ndarray) -> np.ndarray:
    """Codes [n, codebooks, 375] from calling the encodec model itself on windows [n, 120000]."""
    audio = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(audio), dtype=np.float32))
    with torch.inference_mode():
        (codes, _), = model.encode(audio[:, None, :])
    return codes.numpy()


def assert_same_codes_up_to_ties(codes: np.ndarray, model, audio: np.ndarray) -> None:
    """`codes` [codebooks, 375] against the model run on this one window alone. Batched and
    single convolutions round differently, which may flip a code where two codewords are
    (nearly) equally close to the latent; anything else must agree."""
    alone = direct_codes(model, audio)[0]
    differ = codes != alone
    assert differ.mean() <= 0.02, f"{differ.sum()} of {differ.size} codes differ"
    with torch.inference_mode():
        latent = model.encoder(torch.from_numpy(np.asarray(audio, dtype=np.float32))[None, None])[0].T
    codebook = model.quantizer.vq.layers[0]._codebook.embed
    for step in np.flatnonzero(differ[0]):  # first codebook: both codes must be near-ties
        pair = torch.as_tensor([int(codes[0, step]), int(alone[0, step])])
        distance = ((latent[step] - codebook[pair]) ** 2).sum(dim=1)
        assert abs(distance[0] - distance[1]) <= 1e-3 * distance.max(), f"step {step}: not a tie"


def test_codes_are_750_integers_in_0_1024_equal_to_the_models_own_codes(codes_model, frames):
    embedding, logits = codes_model.embed(frames)  # batches of 2 and 1
    assert logits is None and codes_model.labels is None
    assert embedding.shape == (3, 750) and embedding.dtype == np.float32 and codes_model.embedding_dim == 750
    assert np.array_equal(embedding, np.round(embedding)) and embedding.min() >= 0 and embedding.max() < 1024
    # exactly the model's codes for the same batches, laid out codebook-major (codebook 0 first)
    same_batches = np.concatenate([direct_codes(codes_model.model, frames[:2]), direct_codes(codes_model.model, frames[2:])])
    assert same_batches.shape == (3, 2, 375)
    np.testing.assert_array_equal(embedding.reshape(3, 2, 375), same_batches)
    for row, audio in zip(embedding, frames):
        assert_same_codes_up_to_ties(row.reshape(2, 375), codes_model.model, audio)
    assert len(np.unique(embedding[:, :375])) > 20  # codes follow the audio (not one constant code)
    assert not np.array_equal(embedding[0], embedding[2])


def test_3_kbps_gives_1500_values_whose_first_two_codebooks_are_the_1_5_kbps_codes(codes_model, frames):
    model = load_backbone("encodec", weights="random", bandwidth=3, batch=2)  # same batches as codes_model
    embedding, _ = model.embed(frames)
    assert embedding.shape == (3, 1500) and model.options() == {"bandwidth": 3.0, "output": "codes"}
    assert embedding.min() >= 0 and embedding.max() < 1024
    # residual quantisation: more bandwidth adds codebooks 2 and 3 after the same first two
    np.testing.assert_array_equal(embedding[:, :750], codes_model.embed(frames)[0])
    assert_same_codes_up_to_ties(embedding[1].reshape(4, 375), model.model, frames[1])


def test_latent_output_is_the_encoder_output_mean_pooled_over_time(frames):
    model = load_backbone("encodec", weights="random", output="latent")
    embedding, _ = model.embed(frames)
    assert embedding.shape == (3, 128) and model.embedding_dim == 128
    with torch.inference_mode():
        latent = model.model.encoder(torch.from_numpy(frames)[:, None, :])
    assert latent.shape == (3, 128, 375)
    np.testing.assert_allclose(embedding, latent.mean(dim=2).numpy(), rtol=1e-5, atol=1e-6)


def test_a_saved_checkpoint_loads_and_gives_the_same_codes(codes_model, frames, tmp_path):
    checkpoint = tmp_path / "encodec_24khz.th"
    torch.save(codes_model.model.state_dict(), checkpoint)
    loaded = load_backbone("encodec", weights=str(checkpoint))
    assert loaded.weights_sha256 == sha256_file(checkpoint)
    np.testing.assert_array_equal(loaded.embed(frames[:1])[0], codes_model.embed(frames[:1])[0])


def test_random_weights_are_reproducible_and_named_as_such(codes_model):
    assert codes_model.weights_sha256 == "random-init-seed-0"
    other = load_backbone("encodec", weights="random", seed=1, output="latent")
    assert other.weights_sha256 == "random-init-seed-1"


def test_bad_settings_and_missing_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(BackboneError, match="bandwidth must be one of"):
        load_backbone("encodec", weights="random", bandwidth=6)
    with pytest.raises(BackboneError, match="output must be one of"):
        load_backbone("encodec", weights="random", output="tokens")
    with pytest.raises(BackboneError, match="absent.th: EnCodec checkpoint not found"):
        load_backbone("encodec", weights=str(tmp_path / "absent.th"))
    (tmp_path / "junk.th").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="junk.th: not a state dict"):
        load_backbone("encodec", weights=str(tmp_path / "junk.th"))

    from encodec import EncodecModel

    def offline(pretrained=True, repository=None):
        raise OSError("<urlopen error [Errno 101] Network is unreachable>")

    monkeypatch.setattr(EncodecModel, "encodec_model_24khz", staticmethod(offline))
    with pytest.raises(BackboneError, match=r"could not fetch the EnCodec 24 kHz weights.*`weights`"):
        load_backbone("encodec")


def test_extract_stores_each_windows_codes(codes_model, tmp_path):
    audio = tmp_path / "soundscapes"
    write_audio(audio / "S1.wav", 10.0, 48000, seed=4, freq=2500)  # 2 windows, resampled to 24 kHz
    write_audio(audio / "S2.wav", 4.0, 32000, seed=5, freq=3500)  # 1 window, zero-padded
    config = ExtractConfig(audio=str(audio), store=str(tmp_path / "store"), model="encodec", dataset="scapes",
                           weights="random", workers=1, batch=2, progress=False)
    summary = extract(config)
    assert (summary.succeeded, summary.failed, summary.windows) == (2, 0, 3)

    directory = tmp_path / "store" / "embeddings" / "model=encodec" / "dataset=scapes"
    assert list(directory.glob("part-*.parquet"))
    meta = store.read_manifest(directory)
    assert meta["labels"] is None and meta["n_labels"] is None and meta["embedding_dim"] == 750
    assert meta["options"] == {"bandwidth": 1.5, "output": "codes"}
    assert meta["weights_sha256"] == "random-init-seed-0" and meta["layout"]["sample_rate"] == 24000
    rows = store.scan(tmp_path / "store", "encodec").sort("file", "window").collect()
    assert rows["file"].to_list() == ["S1.wav", "S1.wav", "S2.wav"] and rows["logits"].null_count() == 3

    # the stored codes are what the model itself gives for [5k, 5k + 5) s of the file at 24 kHz
    # (S1's two windows went through as one batch of 2, S2's alone, zero-padded to 5 s)
    s1 = load_audio(audio / "S1.wav", 24000)[: 2 * SAMPLES].reshape(2, SAMPLES)
    s2 = np.pad(load_audio(audio / "S2.wav", 24000), (0, SAMPLES - 4 * 24000))
    stored = np.stack([np.asarray(row, dtype=np.float32) for row in rows["embedding"].to_list()]).reshape(3, 2, 375)
    np.testing.assert_array_equal(stored[:2], direct_codes(codes_model.model, s1))
    np.testing.assert_array_equal(stored[2], direct_codes(codes_model.model, s2)[0])
    for k in range(2):
        assert_same_codes_up_to_ties(stored[k], codes_model.model, s1[k])


def test_command_line_passes_encodec_options_only_when_given():
    import argparse

    from birdemb.backbones import backbone_class
    from birdemb.commands.extract import register

    model_options = backbone_class("encodec").options_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["extract", "--model", "encodec", "--audio", "a", "--store", "s", "--dataset", "d"]
    given = parser.parse_args(base + ["--bandwidth", "3", "--encodec-output", "latent"])
    assert model_options(given) == {"bandwidth": 3.0, "output": "latent"}
    assert model_options(parser.parse_args(base)) == {}  # the backbone's own defaults apply
    assert model_options(parser.parse_args(base + ["--device", "cpu"])) == {"device": "cpu"}
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--bandwidth", "6"])


def test_the_encoder_only_path_stores_the_rows_the_packages_own_encode_gave(codes_model, frames):
    """The old path (the package's full model.encode on batches of 2, weight norm live, all of its
    quantiser) against today's (encoder split around the LSTM, weight norm folded, only the
    codebooks asked for): identical codes, latents equal to float tolerance."""
    from birdemb.backbones.encodec import build_model

    package, _ = build_model("random")  # the same seeded weights, untouched
    package.set_target_bandwidth(1.5)
    assert hasattr(package.encoder.model[0].conv.conv, "weight_g")  # still weight-normed
    assert not hasattr(codes_model._convs[0].conv.conv, "weight_g")  # folded in the lean copy
    audio = torch.from_numpy(frames)[:, None, :]
    with torch.inference_mode():
        old_codes = np.concatenate([package.encode(audio[i:i + 2])[0][0].numpy() for i in (0, 2)])
        old_latent = torch.cat([package.encoder(audio[i:i + 2]) for i in (0, 2)])
        new_latent = codes_model.encode(audio)
    np.testing.assert_array_equal(codes_model.embed(frames)[0].reshape(3, 2, 375), old_codes)
    np.testing.assert_allclose(new_latent.numpy(), old_latent.numpy(), rtol=1e-5, atol=1e-6)
    latent_model = load_backbone("encodec", weights="random", output="latent")
    np.testing.assert_allclose(latent_model.embed(frames)[0], old_latent.mean(dim=2).numpy(), rtol=1e-5, atol=1e-6)


def test_device_auto_is_cuda_only_where_torch_sees_one(monkeypatch, frames):
    from birdemb.backbones.device import choose_device
    from birdemb.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = load_backbone("encodec", weights="random", output="latent", batch=8)
    assert model.device == "cpu" and model.conv_batch == 1  # one window per convolution call on the CPU
    assert next(model._convs.parameters()).device.type == "cpu"
    assert model.embed(frames[:1])[0].shape == (1, 128)
    with pytest.raises(UsageError, match="no CUDA device"):
        load_backbone("encodec", weights="random", device="cuda")
    with pytest.raises(UsageError, match="device must be one of"):
        choose_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no kernel runs: only the choice
    assert choose_device("auto") == choose_device("cuda") == "cuda" and choose_device("cpu") == "cpu"
    assert load_backbone("encodec", weights="random", device="cpu").device == "cpu"  # forced CPU
