"""The Bird Vocalization Classifier backbone on a stand-in SavedModel (the real Perch weights
cannot be downloaded here): the real compile, cache and ai-edge-litert inference path, checked
against the SavedModel run in TensorFlow, the species subset column by column, and extraction."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from birdemb import store
from birdemb.backbones import BackboneError, load_backbone, vocalization
from birdemb.extract.job import ExtractConfig, extract
from birdemb.runtime.audio import load_audio
from tests.helpers.audio import tone, write_audio
from tests.helpers.paths import REPOSITORY
from tests.helpers.standins import build_perch_standin, perch_labels, perch_standin_reference

ROOT = REPOSITORY
SPECIES = ["zzzzz1", "houspa", "amerob", "notabird", "aakspa1"]  # known and unknown, not sorted


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return build_perch_standin(tmp_path_factory.mktemp("perch") / "savedmodel")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def cache(module_cache, monkeypatch) -> Path:
    monkeypatch.setenv("BIRDEMB_CACHE", str(module_cache))
    return module_cache


def waveforms(n: int) -> np.ndarray:
    """n different 5 s waveforms at 32 kHz: tones at several pitches and loudness, and noise."""
    rows = [tone(5.0, 32000, freq=1000 + 700 * i, seed=i)[:, 0] * (0.2 + 0.3 * (i % 3)) for i in range(n - 1)]
    rows.append(0.05 * np.random.default_rng(9).standard_normal(160_000))
    return np.stack(rows).astype(np.float32)


def model_labels() -> list[str]:
    return perch_labels().read_text(encoding="utf-8").splitlines()[1:]


def test_labels_come_from_assets_label_csv_in_logit_order(standin):
    model = load_backbone("vocalization", weights=str(standin))
    assert model.labels == model_labels() and len(model.labels) == 10_932
    assert model.labels[0] == "aakspa1" and not any("\r" in label for label in model.labels)
    assert model.describe()["n_labels"] == 10_932 and model.embedding_dim == 1280


def test_compiled_model_gives_the_savedmodel_outputs_batched(standin):
    frames = waveforms(5)
    model = load_backbone("vocalization", weights=str(standin), batch=2)  # batches of 2, 2 and 1
    embedding, logits = model.embed(frames)
    truth = perch_standin_reference(standin, frames)
    assert embedding.shape == (5, 1280) and logits.shape == (5, 10_932)
    np.testing.assert_allclose(embedding, truth["embedding"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(logits, truth["logits"], atol=1e-5, rtol=1e-5)
    assert np.ptp(logits, axis=0).max() > 0.1  # the inputs really differ in what the model sees
    assert np.ptp(embedding, axis=0).max() > 0.1


def test_tflite_batch_dimension_is_resizable(standin):
    from ai_edge_litert.interpreter import Interpreter

    model = load_backbone("vocalization", weights=str(standin))
    interpreter = Interpreter(model_path=str(model.model_path))
    assert interpreter.get_input_details()[0]["shape_signature"].tolist() == [-1, 160_000]
    widths = sorted(d["shape_signature"].tolist()[1] for d in interpreter.get_output_details())
    assert widths == [1280, 10_932]  # the stand-in's `frontend` output was left out


def test_compiled_once_then_cached_under_birdemb_cache(standin, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIRDEMB_CACHE", str(tmp_path / "fresh"))
    first = load_backbone("vocalization", weights=str(standin))
    digest = vocalization.hash_folder(standin)
    assert first.model_path == tmp_path / "fresh" / "vocalization" / f"{digest}.tflite"
    assert first.weights_sha256 == digest
    assert first.compile_record["compiled_now"] and first.compile_record["compile_s"] > 0
    assert f"cached at {first.model_path}" in capsys.readouterr().err
    stamp = first.model_path.stat().st_mtime_ns

    second = load_backbone("vocalization", weights=str(standin))
    assert not second.compile_record["compiled_now"]
    assert second.model_path == first.model_path and second.model_path.stat().st_mtime_ns == stamp
    assert json.loads(first.model_path.with_suffix(".json").read_text())["weights_sha256"] == digest


def test_cache_hit_does_not_import_tensorflow(standin, cache):
    load_backbone("vocalization", weights=str(standin))  # make sure the cache holds it
    code = (
        "import sys, numpy as np\n"
        "from birdemb.backbones import load_backbone\n"
        f"m = load_backbone('vocalization', weights={str(standin)!r})\n"
        "e, l = m.embed(np.zeros((1, 160000), np.float32))\n"
        "assert not m.compile_record['compiled_now']\n"
        "print('tensorflow' in sys.modules, e.shape, l.shape)\n"
    )
    env = {**os.environ, "BIRDEMB_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "False (1, 1280) (1, 10932)"


def test_hashing_the_weights_folder_sees_every_file(standin, tmp_path):
    import shutil

    copy = Path(shutil.copytree(standin, tmp_path / "copy"))
    assert vocalization.hash_folder(copy) == vocalization.hash_folder(standin)  # path-independent
    (copy / "assets" / "extra.txt").write_text("x")
    assert vocalization.hash_folder(copy) != vocalization.hash_folder(standin)


def test_serving_default_outputs_are_chosen_by_width_not_position(tmp_path):
    # this stand-in has no infer_tf, and lists the logits first (output_0) and the embedding second
    path = build_perch_standin(tmp_path / "serving", signature="serving_default")
    frames = waveforms(3)
    embedding, logits = load_backbone("vocalization", weights=str(path)).embed(frames)
    truth = perch_standin_reference(path, frames)
    np.testing.assert_allclose(embedding, truth["embedding"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(logits, truth["logits"], atol=1e-5, rtol=1e-5)


def test_species_subset_column_j_belongs_to_species_j(standin, tmp_path):
    frames = waveforms(4)
    raw = load_backbone("vocalization", weights=str(standin)).embed(frames)[1]
    labels = model_labels()
    species_file = tmp_path / "species.txt"
    species_file.write_text("\n".join(SPECIES) + "\n")
    for species in (SPECIES, str(species_file)):  # as a list, and as a species-list file
        model = load_backbone("vocalization", weights=str(standin), species=species)
        assert model.labels == SPECIES and model.options() == {"species": SPECIES}
        embedding, logits = model.embed(frames)
        assert logits.shape == (4, 5)
        for j, code in enumerate(SPECIES):
            if code in labels:
                np.testing.assert_array_equal(logits[:, j], raw[:, labels.index(code)])
            else:
                assert np.isneginf(logits[:, j]).all(), code
    assert [code in labels for code in SPECIES] == [False, True, True, False, True]


def test_missing_or_unusable_weights_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(BackboneError, match="no such SavedModel folder"):
        load_backbone("vocalization", weights=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match=r"empty: not a TF SavedModel folder \(no saved_model.pb\)"):
        load_backbone("vocalization", weights=str(tmp_path / "empty"))

    import kagglehub

    def offline(handle, *args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(kagglehub, "model_download", offline)
    with pytest.raises(BackboneError, match=r"could not download Kaggle model google/bird-vocalization.*`weights`"):
        load_backbone("vocalization")  # the default: the Kaggle v4 handle


def test_extract_writes_the_store_layout_and_manifest(standin, tmp_path):
    audio = tmp_path / "train_audio"
    write_audio(audio / "amerob" / "XC1.wav", 12.0, 48000, seed=1)  # 3 windows, resampled to 32 kHz
    write_audio(audio / "houspa" / "XC2.wav", 5.0, 32000, seed=2, freq=2000)  # 1 window
    config = ExtractConfig(audio=str(audio), store=str(tmp_path / "store"), model="vocalization",
                           dataset="train", weights=str(standin), workers=1, batch=2, progress=False)
    summary = extract(config)
    assert (summary.succeeded, summary.failed, summary.windows) == (2, 0, 4)

    directory = tmp_path / "store" / "embeddings" / "model=vocalization" / "dataset=train"
    meta = store.read_manifest(directory)
    assert meta["model"] == "vocalization" and meta["weights_sha256"] == vocalization.hash_folder(standin)
    assert meta["labels"] == model_labels() and meta["embedding_dim"] == 1280
    assert meta["layout"]["sample_rate"] == 32000 and meta["layout"]["frame_offsets_s"] == [0.0]
    rows = store.scan(tmp_path / "store", "vocalization").sort("file", "window").collect()
    assert rows["file"].to_list() == ["amerob/XC1.wav"] * 3 + ["houspa/XC2.wav"]
    assert rows["start_s"].to_list() == [0, 5, 10, 0] and rows["end_s"].to_list() == [5, 10, 15, 5]

    # window k holds the model's outputs for samples [5k, 5k + 5) s of the file at 32 kHz
    signal = load_audio(audio / "amerob" / "XC1.wav", 32000)
    frames = np.stack([np.pad(signal, (0, 15 * 32000 - len(signal)))[k * 160000 : (k + 1) * 160000] for k in range(3)])
    truth = perch_standin_reference(standin, frames)
    np.testing.assert_allclose(np.stack(rows["embedding"].to_list()[:3]), truth["embedding"], atol=1e-5)
    np.testing.assert_allclose(np.stack(rows["logits"].to_list()[:3]), truth["logits"], atol=1e-5)

    # a species subset is recorded, and its columns follow the list
    subset = ExtractConfig(**{**config.__dict__, "dataset": "subset", "model_options": {"species": SPECIES}})
    extract(subset)
    meta = store.manifest(tmp_path / "store", "vocalization", "subset")
    assert meta["labels"] == SPECIES and meta["options"] == {"species": SPECIES}
    picked = store.scan(tmp_path / "store", "vocalization", "subset").sort("file", "window").collect()
    logits = np.stack(picked["logits"].to_list()[:3])
    np.testing.assert_allclose(logits[:, 2], truth["logits"][:, model_labels().index("amerob")], atol=1e-5)
    assert np.isneginf(logits[:, 3]).all()
    assert picked.filter(pl.col("file") == "houspa/XC2.wav").height == 1


def test_command_line_species_list_reaches_the_manifest(standin, tmp_path):
    from birdemb.cli import main

    write_audio(tmp_path / "audio" / "S1.wav", 6.0, 32000, seed=3)
    (tmp_path / "species.txt").write_text("\n".join(SPECIES) + "\n")
    code = main(["extract", "--model", "vocalization", "--weights", str(standin), "--audio", str(tmp_path / "audio"),
                 "--store", str(tmp_path / "store"), "--dataset", "scapes", "--workers", "1", "--quiet",
                 "--species-list", str(tmp_path / "species.txt"), "--bandwidth", "3"])  # encodec's option: ignored
    assert code == 0
    meta = store.manifest(tmp_path / "store", "vocalization", "scapes")
    assert meta["labels"] == SPECIES and meta["options"] == {"species": SPECIES} and meta["n_labels"] == 5


def test_models_with_another_frame_length_or_ambiguous_outputs_are_refused(tmp_path):
    import shutil

    import tensorflow as tf

    class OtherLength(tf.Module):  # 3 s frames: not the Perch v4 interface
        @tf.function(input_signature=[tf.TensorSpec([None, 96000], tf.float32)])
        def infer_tf(self, x):
            return {"embedding": tf.tile(x[:, :1], [1, 1280]), "label": tf.tile(x[:, :1], [1, 10932])}

    class TwoEmbeddings(tf.Module):  # two 1280-wide outputs, neither named `embedding`
        @tf.function(input_signature=[tf.TensorSpec([None, 160000], tf.float32)])
        def infer_tf(self, x):
            return {"a": tf.tile(x[:, :1], [1, 1280]), "b": tf.tile(x[:, :1], [1, 1280]),
                    "label": tf.tile(x[:, :1], [1, 10932])}

    for module, message in [(OtherLength(), r"does not take \[batch, 160000\] float32 waveforms"),
                            (TwoEmbeddings(), r"cannot tell which output is the embedding .* a \[None, 1280\]")]:
        folder = tmp_path / type(module).__name__
        tf.saved_model.save(module, str(folder))
        (folder / "assets").mkdir(exist_ok=True)
        shutil.copyfile(perch_labels(), folder / "assets" / "label.csv")
        with pytest.raises(BackboneError, match=message):
            load_backbone("vocalization", weights=str(folder))
