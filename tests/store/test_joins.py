"""Joining one model's embeddings with another's logits on (dataset, file, window): rows pair
up by key whatever the part order, and stores cut differently are refused with a message
naming the difference."""
from __future__ import annotations

import numpy as np
import pytest

from birdemb import store
from birdemb.extract.job import ExtractConfig, extract
from birdemb.store import StoreError, join
from tests.helpers.audio import write_audio

FILES = {"a/XC1.ogg": 3, "a/XC2.ogg": 1, "b/XC3.ogg": 2}


def value(model: str, file: str, window: int) -> float:
    """A number that says which model, file and window a row came from."""
    return {"emb": 1000.0, "lgt": 2000.0}[model] + 10 * int(file.split("XC")[-1].split(".")[0] or 0) + window


def write_partition(root, model: str, dataset: str, files: dict[str, int], *, dim: int, n_labels: int | None,
                    window_s: float = 5.0, min_audio_s: float = 1.0, parts: int = 1) -> None:
    """A partition written directly: each (file, window) row carries value(model, file, window)."""
    directory = store.partition_dir(root, model, dataset)
    layout = {"window_s": window_s, "min_audio_s": min_audio_s, "sample_rate": 32000}
    labels = None if n_labels is None else [f"sp{i}" for i in range(n_labels)]
    store.check_or_write_manifest(directory, {"model": model, "labels": labels,
                                              "parameters": {"model": model, "layout": layout}})
    writer = store.PartWriter(directory, store.schema(dim, n_labels))
    names = list(files)
    for index, group in enumerate(np.array_split(np.arange(len(names)), parts)):
        for i in group[::-1]:  # files in another order than the other model's
            file, n = names[i], files[names[i]]
            values = np.array([value(model, file, k) for k in range(n)], dtype=np.float32)
            writer.add(store.FileRows(
                file=file, species=file.split("/")[0], secondary_labels=[], duration_s=n * window_s,
                start_s=np.arange(n) * window_s, end_s=np.arange(n) * window_s + window_s,
                embedding=np.repeat(values[:, None], dim, axis=1),
                logits=None if n_labels is None else np.repeat(values[:, None], n_labels, axis=1),
            ))
        writer.flush()


def test_rows_pair_up_by_file_and_window(tmp_path):
    write_partition(tmp_path, "emb", "train", FILES, dim=4, n_labels=None)
    write_partition(tmp_path, "lgt", "train", FILES, dim=8, n_labels=3, parts=2)
    joined = join(tmp_path, "emb", "lgt").collect()
    assert joined.columns == ["dataset", "file", "species", "window", "start_s", "end_s", "embedding", "logits"]
    assert joined.height == sum(FILES.values())
    for row in joined.iter_rows(named=True):
        assert row["embedding"] == [value("emb", row["file"], row["window"])] * 4
        assert row["logits"] == [value("lgt", row["file"], row["window"])] * 3
        assert row["start_s"] == 5 * row["window"] and row["dataset"] == "train"
    assert joined.filter(joined["file"] == "a/XC1.ogg")["window"].to_list() == [0, 1, 2]


def test_files_only_in_one_store_are_named(tmp_path):
    write_partition(tmp_path, "emb", "train", {**FILES, "c/XC9.ogg": 1, "c/XC8.ogg": 2}, dim=4, n_labels=None)
    write_partition(tmp_path, "lgt", "train", {"a/XC1.ogg": 3, "a/XC2.ogg": 1, "b/XC3.ogg": 2, "d/XC7.ogg": 1},
                    dim=8, n_labels=3)
    with pytest.raises(StoreError, match=r"2 files only in emb: c/XC8.ogg, c/XC9.ogg; 1 files only in lgt: d/XC7.ogg"):
        join(tmp_path, "emb", "lgt")


def test_different_window_counts_are_named(tmp_path):
    write_partition(tmp_path, "emb", "train", FILES, dim=4, n_labels=None)
    write_partition(tmp_path, "lgt", "train", {**FILES, "a/XC1.ogg": 2}, dim=8, n_labels=3)
    with pytest.raises(StoreError, match=r"1 files with different window counts: a/XC1.ogg \(emb 3, lgt 2\)"):
        join(tmp_path, "emb", "lgt")


def test_different_window_layouts_are_refused(tmp_path):
    write_partition(tmp_path, "emb", "train", FILES, dim=4, n_labels=None, window_s=5.0)
    write_partition(tmp_path, "lgt", "train", FILES, dim=8, n_labels=3, window_s=3.0)
    with pytest.raises(StoreError, match=r"window_s 5.0 vs 3.0"):
        join(tmp_path, "emb", "lgt")
    write_partition(tmp_path, "lgt", "soundscapes", FILES, dim=8, n_labels=3, min_audio_s=2.5)
    write_partition(tmp_path, "emb", "soundscapes", FILES, dim=4, n_labels=None)
    with pytest.raises(StoreError, match=r"min_audio_s 1.0 vs 2.5"):
        join(tmp_path, "emb", "lgt", dataset="soundscapes")


def test_a_model_without_logits_or_a_missing_dataset_is_refused(tmp_path):
    write_partition(tmp_path, "emb", "train", FILES, dim=4, n_labels=None)
    write_partition(tmp_path, "lgt", "train", FILES, dim=8, n_labels=3)
    with pytest.raises(StoreError, match="model=emb has no classifier"):
        join(tmp_path, "lgt", "emb")
    write_partition(tmp_path, "emb", "test", FILES, dim=4, n_labels=None)
    with pytest.raises(StoreError, match=r"only in emb: test; only in lgt: none"):
        join(tmp_path, "emb", "lgt")
    assert join(tmp_path, "emb", "lgt", dataset="train").collect().height == 6  # one dataset still joins
    with pytest.raises(StoreError, match="no partition for model=lgt, dataset=test"):
        join(tmp_path, "emb", "lgt", dataset="test")


def test_encodec_embeddings_join_birdnet_logits_from_real_extractions(tmp_path):
    audio = tmp_path / "train_audio"
    write_audio(audio / "amerob" / "XC1.wav", 10.5, 48000, seed=1)  # 2 windows (0.5 s rest dropped)
    write_audio(audio / "norcar" / "XC2.wav", 4.0, 32000, seed=2, freq=4000)  # 1 window
    common = dict(audio=str(audio), store=str(tmp_path / "store"), dataset="train", workers=1, progress=False)
    extract(ExtractConfig(model="encodec", weights="random", **common))
    extract(ExtractConfig(model="birdnet", **common))
    joined = join(tmp_path / "store", "encodec", "birdnet").collect()
    assert joined["file"].to_list() == ["amerob/XC1.wav"] * 2 + ["norcar/XC2.wav"]
    assert joined["window"].to_list() == [0, 1, 0]
    codes = store.scan(tmp_path / "store", "encodec").sort("file", "window").collect()
    logits = store.scan(tmp_path / "store", "birdnet").sort("file", "window").collect()
    assert joined["embedding"].to_list() == codes["embedding"].to_list()
    assert joined["logits"].to_list() == logits["logits"].to_list()
    assert len(joined["embedding"][0]) == 750 and len(joined["logits"][0]) == 6522
