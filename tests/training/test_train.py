"""Heads, export, data loading and training end to end: on generated stores, and on the real
xc10 corpus with BirdNET where present."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from birdemb import store
from birdemb.cli import main
from birdemb.runtime.head import HeadError, HeadWeights, head_logits, load_head, save_head
from birdemb.training import rundir
from birdemb.training.config import TrainConfig
from birdemb.training.fit import train_head
from birdemb.training.heads import LOW_BIAS, build_head, export_onnx, residual_start, to_layers
from birdemb.training.windows import array_view, load_windows, tensor_view

SPECIES = ["amerob", "blujay", "norcar"]
SURROGATE_LABELS = ["amerob", "blujay", "houspa", "norcar"]  # eBird codes (Perch style)
LAYOUT = {"window_s": 5.0, "frame_s": 5.0, "sample_rate": 32000}


def write_partition(root, model, dataset, files, dim, labels, seed=0):
    """A store partition of generated windows: the embedding and the logits both carry the
    file's species on windows with a call (windows 0 and 1 of every file; 2 is silent)."""
    rng = np.random.default_rng(seed)
    directory = store.partition_dir(root, model, dataset)
    manifest = {"model": model, "version": "test", "weights_sha256": f"sha-{model}", "options": {"x": 1},
                "labels": labels, "layout": LAYOUT, "embedding_dim": dim,
                "n_labels": len(labels) if labels else None,
                "parameters": {"model": model, "layout": LAYOUT}}
    store.check_or_write_manifest(directory, manifest)
    writer = store.PartWriter(directory, store.schema(dim, len(labels) if labels else None))
    for name, species in files:
        call = np.array([1.0, 1.0, 0.0])
        embedding = rng.normal(0, 1, (3, dim)).astype(np.float32)
        logits = None
        if species is not None:
            embedding[:, SPECIES.index(species)] += 3 * call
        if labels:
            logits = np.full((3, len(labels)), -5.0, dtype=np.float32) + rng.normal(0, 1, (3, len(labels)))
            if species is not None:
                logits[:, labels.index(species)] += 8 * call - rng.random(3) * 4 * call
        writer.add(store.FileRows(name, species, [], 15.0, np.arange(3) * 5.0, np.arange(3) * 5.0 + 5,
                                  embedding, logits.astype(np.float32) if logits is not None else None))
        if len(writer._pending) >= 7:  # several parts, so reading must rechunk
            writer.flush()
    writer.flush()


@pytest.fixture()
def generated_store(tmp_path):
    files = [(f"{s}/XC{s}{i}.ogg", s) for s in SPECIES for i in range(10)]
    root = tmp_path / "store"
    write_partition(root, "vocalization", "train", files, 12, SURROGATE_LABELS, seed=0)
    write_partition(root, "encodec", "train", files, 16, None, seed=1)
    write_partition(root, "vocalization", "soundscape", [("ss1.ogg", None), ("ss2.ogg", None)], 12,
                    SURROGATE_LABELS, seed=2)
    return root


# ---------------------------------------------------------------- heads


def test_hidden_head_exports_with_batchnorm_folded_and_onnx_agrees(tmp_path):
    torch.manual_seed(0)
    head = build_head(20, 5, hidden=16)
    optimiser = torch.optim.SGD(head.parameters(), lr=0.1)
    for _ in range(5):  # move the BatchNorm statistics and affine parameters off their defaults
        optimiser.zero_grad()
        head(torch.randn(32, 20) * 3 + 1).pow(2).mean().backward()
        optimiser.step()
    x = torch.randn(50, 20)
    head.eval()
    expected = head(x).detach().numpy()
    layers = to_layers(head)
    assert [w.shape for w, _ in layers] == [(16, 20), (5, 16)]
    np.testing.assert_allclose(head_logits(layers, x.numpy()), expected, atol=1e-5)

    import onnxruntime

    path = export_onnx(layers, tmp_path / "head.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"embedding": x.numpy()})
    np.testing.assert_allclose(onnx_out, expected, atol=1e-5)


def test_residual_head_onnx_adds_the_backbone_logits_it_names(tmp_path):
    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3).astype(np.float32))]
    residual = np.array([5, -1, 0])  # species 0 adds backbone logit 5, species 2 logit 0
    x, logits = rng.standard_normal((7, 4)).astype(np.float32), rng.standard_normal((7, 6)).astype(np.float32)
    expected = x @ layers[0][0].T + layers[0][1] + np.stack([logits[:, 5], np.zeros(7), logits[:, 0]], axis=1)
    np.testing.assert_allclose(head_logits(HeadWeights(layers, residual), x, logits), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(HeadError, match="backbone's own logits"):
        head_logits(HeadWeights(layers, residual), x)
    saved = load_head(save_head(tmp_path, layers, residual))
    np.testing.assert_array_equal(saved.residual, residual)

    import onnxruntime

    session = onnxruntime.InferenceSession(str(export_onnx(layers, tmp_path / "head.onnx", residual, 6)),
                                           providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"embedding": x, "backbone_logits": logits})
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-5, atol=1e-5)


def test_residual_start_makes_the_head_the_surrogate_for_species_it_knows():
    head = build_head(3, 3, hidden=8)  # any depth: only the last layer's rows are set
    assert residual_start(head, np.array([True, False, True]), LOW_BIAS) == 2
    head.eval()
    x = torch.randn(5, 3)
    out = head(x).detach().numpy()
    np.testing.assert_allclose(out[:, [0, 2]], 0.0, atol=1e-6)  # + the surrogate's logit = the surrogate
    assert head.classifier_bias()[1] == LOW_BIAS and (out[:, 1] < LOW_BIAS + 1).all()  # unknown: near 0 until trained


# ---------------------------------------------------------------- data loading


def test_embeddings_reach_numpy_with_at_most_one_copy(generated_store):
    frame = store.scan(generated_store, "vocalization", "train").select("embedding").collect()
    column = frame["embedding"]
    assert column.n_chunks() > 1  # several part files
    view = array_view(column)
    assert view.shape == (90, 12) and view.dtype == np.float32
    single = column.rechunk()
    assert np.shares_memory(array_view(single), single.to_numpy())  # one chunk: no copy at all
    assert np.shares_memory(tensor_view(view).numpy(), view)  # numpy -> torch: no copy
    windows = load_windows(generated_store, "vocalization", "vocalization", ["train"])
    np.testing.assert_array_equal(windows.embeddings, view)


def test_cross_model_rows_pair_embeddings_with_surrogate_logits(generated_store):
    windows = load_windows(generated_store, "encodec", "vocalization", ["train"])
    own = store.scan(generated_store, "vocalization", "train").select("file", "window", "logits").collect()
    assert windows.embeddings.shape == (90, 16)
    assert windows.surrogate_labels == SURROGATE_LABELS
    key = {(f, w): i for i, (f, w) in enumerate(zip(own["file"], own["window"]))}
    for i in (0, 17, 89):
        j = key[(windows.rows["file"][i], windows.rows["window"][i])]
        np.testing.assert_array_equal(windows.logits[i], own["logits"][j].to_numpy())


# ---------------------------------------------------------------- training


def test_train_head_cli_writes_the_run_dir_and_holds_out_whole_files(generated_store, tmp_path):
    out = tmp_path / "run"
    code = main(["train-head", "--store", str(generated_store), "--embeddings", "vocalization",
                 "--surrogate", "vocalization", "--labels", "species", "--loss", "asl", "--hidden", "256",
                 "--out", str(out), "--epochs", "15", "--batch-size", "32", "--lr", "0.01", "--dataset", "train"])
    assert code == 0
    for name in (rundir.CONFIG, rundir.SPECIES, rundir.HEAD, rundir.HEAD_ONNX, rundir.METRICS,
                 rundir.CHECKPOINT, rundir.CURVE):
        assert (out / name).is_file(), name
    config = json.loads((out / rundir.CONFIG).read_text())
    assert config["layout"] == LAYOUT
    assert config["backbone"] == {"model": "vocalization", "version": "test",
                                  "weights_sha256": "sha-vocalization", "options": {"x": 1}}
    assert (config["embeddings"], config["surrogate"]) == ("vocalization", "vocalization")
    assert json.loads((out / rundir.SPECIES).read_text()) == SPECIES
    m = json.loads((out / rundir.METRICS).read_text())
    assert m["mapping"]["matched"] == 3
    assert m["counts"]["val_files"] == 6 and m["counts"]["val_windows"] == 18
    assert m["counts"]["train_windows"] + m["counts"]["val_windows"] == 90
    assert m["truth"] == "folder labels"  # ground truth first: each file's folder species on its windows
    assert m["passthrough"]["macro_auroc"] > 0.85  # generated logits carry the species (window 2 is silent)
    assert m["val_macro_auroc"] > 0.85  # and so do the embeddings
    assert m["files"]["head_macro_auroc"] > 0.95 and m["files"]["passthrough_macro_auroc"] > 0.99  # 6 files
    assert m["agreement_with_labels"]["head"]["macro_auroc"] > 0.85  # with the training labels
    # the held-out files are not in training, and the metric is recomputable from the head
    from birdemb.training.evaluate import config_from_run, evaluate

    saved = config_from_run(out)
    again = evaluate(saved.data, saved.labels, out)
    assert again["head"]["macro_auroc"] == pytest.approx(m["val_macro_auroc"], abs=1e-6)
    assert again["passthrough"]["macro_auroc"] == pytest.approx(m["passthrough"]["macro_auroc"])
    # the checkpoint holds the exported head
    state = torch.load(out / rundir.CHECKPOINT, weights_only=False)["state_dict"]
    head = build_head(12, 3, hidden=256)
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
    windows = load_windows(generated_store, "vocalization", "vocalization", ["train"])
    saved_head = load_head(out)  # a hidden layer, adding the surrogate's logit for the 3 species it knows
    assert (saved_head.residual >= 0).sum() == 3
    added = windows.logits[:, saved_head.residual]
    with torch.no_grad():
        np.testing.assert_allclose(head_logits(saved_head, windows.embeddings, windows.logits),
                                   head.eval()(torch.tensor(windows.embeddings)).numpy() + added, atol=1e-4)


def test_training_is_seeded_and_folder_labels_need_folders(generated_store):
    base = dict(store=str(generated_store), embeddings="encodec", surrogate="vocalization", labels="pseudo",
                loss="bce", epochs=4, batch_size=16, datasets=["train"], seed=3)
    first = train_head(TrainConfig.from_flat(base))
    second = train_head(TrainConfig.from_flat(base))
    assert first.metrics["val_macro_auroc"] == second.metrics["val_macro_auroc"]
    np.testing.assert_array_equal(first.head.layers[0][0], second.head.layers[0][0])
    from birdemb.errors import UsageError

    with pytest.raises(UsageError, match="soundscape"):
        train_head(TrainConfig.from_flat({**base, "embeddings": "vocalization", "labels": "folder", "datasets": None}))


def test_soundscape_windows_train_with_pseudo_labels(generated_store):
    result = train_head(TrainConfig.from_flat(dict(store=str(generated_store), embeddings="vocalization", surrogate="vocalization",
                                    labels="pseudo", loss="sigmoidf1", epochs=3, batch_size=32)))
    assert result.metrics["counts"]["windows"] == 96  # 90 train + 6 soundscape windows


def test_init_surrogate_on_other_embeddings_is_a_clear_error(generated_store):
    from birdemb.errors import UsageError

    with pytest.raises(UsageError, match="init=surrogate"):
        train_head(TrainConfig.from_flat(dict(store=str(generated_store), embeddings="encodec", surrogate="vocalization",
                               labels="pseudo", init="surrogate")))


def test_sweep_writes_a_results_table(generated_store, tmp_path):
    from birdemb.training.sweep import Grid, run_sweep

    base = TrainConfig.from_flat(dict(store=str(generated_store), embeddings="encodec", surrogate="vocalization",
                       out=str(tmp_path / "sweep"), epochs=2, batch_size=32, datasets=["train"]))
    table = run_sweep(base, Grid(losses=["bce", "asl"], labels=["species"], hidden=[0],
                                 embeddings=["encodec"], inits=["scratch", "surrogate"]), progress=lambda _: None)
    assert table.height == 2  # init=surrogate skipped: encodec is not the surrogate
    assert set(table["loss"]) == {"bce", "asl"}
    assert (tmp_path / "sweep" / "results.parquet").is_file()
    assert "| loss |" in (tmp_path / "sweep" / "results.md").read_text()


# ---------------------------------------------------------------- real audio (xc10, BirdNET)


@pytest.fixture(scope="session")
def xc10_stores(xc10, tmp_path_factory):
    """A BirdNET store of xc10 with 3 s windows: one frame per window, so the stored logits are
    BirdNET's own (5 s windows max-pool two frames). One store keeps the suite fast."""
    root = tmp_path_factory.mktemp("xc10store")
    for name, window in (("store3", "3"),):
        subprocess.run([sys.executable, "-m", "birdemb", "extract", "--model", "birdnet", "--audio",
                        str(xc10 / "train_audio"), "--store", str(root / name), "--dataset", "train",
                        "--metadata", str(xc10 / "train_metadata.csv"), "--window-s", window, "--quiet"],
                       check=True, capture_output=True)
    return root


@pytest.mark.parametrize("scheme", ["species", "pseudo"])
def test_xc10_birdnet_heads_are_scored_on_held_out_files(xc10, xc10_stores, tmp_path, scheme):
    result = train_head(TrainConfig.from_flat(dict(
        store=str(xc10_stores / "store3"), embeddings="birdnet", surrogate="birdnet", labels=scheme, loss="bce",
        metadata=str(xc10 / "train_metadata.csv"), epochs=10, batch_size=32, out=str(tmp_path / scheme))))
    m = result.metrics
    assert m["mapping"]["matched"] == 10
    rows = store.scan(xc10_stores / "store3", "birdnet", "train").select("file").collect()["file"].to_list()
    val_files = {f.split("/", 1)[1] for f in m["val_files"]}
    assert len(val_files) == 20  # 2 of each species' 10 files
    assert m["counts"]["val_windows"] == sum(f in val_files for f in rows)
    assert m["counts"]["train_windows"] == sum(f not in val_files for f in rows)
    assert 0.5 <= m["val_macro_auroc"] <= 1 and 0 <= m["passthrough"]["macro_auroc"] <= 1


def test_xc10_residual_head_starts_as_birdnet(xc10, xc10_stores, tmp_path):
    store3 = xc10_stores / "store3"
    result = train_head(TrainConfig.from_flat(dict(
        store=str(store3), embeddings="birdnet", surrogate="birdnet", labels="species", loss="bce",
        init="surrogate", metadata=str(xc10 / "train_metadata.csv"), steps=0, out=str(tmp_path / "warm"))))
    frame = store.scan(store3, "birdnet", "train").select("embedding", "logits").collect()
    manifest = store.manifest(store3, "birdnet", "train")
    from birdemb.labels.species import label_index, read_taxonomy, select_logits

    species = json.loads((tmp_path / "warm" / rundir.SPECIES).read_text())
    index = label_index(manifest["labels"], species, read_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv"))
    logits = frame["logits"].to_numpy()
    expected = select_logits(logits, index)  # BirdNET's logit for each species, found by its name
    head = load_head(tmp_path / "warm")
    np.testing.assert_array_equal(head.residual, index)
    np.testing.assert_allclose(head_logits(head, frame["embedding"].to_numpy(), logits), expected, atol=1e-4)
    # step 0 is passthrough: the same scores on the same validation windows
    assert result.metrics["initial_val_macro_auroc"] == pytest.approx(result.metrics["passthrough"]["macro_auroc"])
    assert result.metrics["best_step"] == -1
