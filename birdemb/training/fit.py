"""Train a small head on stored embeddings against labels from a surrogate model.

`train_head(TrainConfig(...))` is the core: prepare windows and labels, split by file, fit
with Lightning (Adam, early stopping and best state on validation macro AUROC), then write
the run directory (see birdemb.training.rundir) with head-versus-passthrough metrics.
"""
from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from birdemb.backbones import BackboneError, load_described
from birdemb.errors import UsageError
from birdemb.labels.schemes import SCHEMES, label_stats
from birdemb.runtime.head import head_logits as numpy_head_logits
from birdemb.runtime.head import save_head, sigmoid
from birdemb.training import heads, metrics, rundir
from birdemb.training.batches import batch_loader
from birdemb.training.config import INITS, TrainConfig
from birdemb.training.curve import plot_curve
from birdemb.training.losses import make_loss
from birdemb.training.module import head_scores, lightning_module_class, make_trainer, quiet_lightning, selection_score
from birdemb.training.prepare import Prepared, passthrough_scores, prepare, split
from birdemb.training.windows import tensor_view

BACKBONE_KEYS = ("model", "entry", "version", "weights_sha256", "options")  # config.json's `backbone`


@dataclass
class TrainResult:
    run_dir: str | None
    metrics: dict
    head_layers: list = field(repr=False, default_factory=list)

    def line(self) -> str:
        m, p = self.metrics, self.metrics.get("passthrough") or {}
        text = (f"head: val macro AUROC {m['val_macro_auroc']:.4f}, macro F1 {m['val_macro_f1']:.4f}"
                f" ({m['counts']['val_windows']} windows of {m['counts']['val_files']} held-out files)")
        if p:
            text += f" | passthrough: AUROC {p['macro_auroc']:.4f}, F1 {p['macro_f1']:.4f}"
        return text


def surrogate_classifier(manifest: dict, weights: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The surrogate's final dense layer (W [labels, dim], b [labels]), read from the same
    weights that produced the store (the backbone checks the sha256 the manifest records)."""
    try:
        backbone = load_described(manifest, weights=weights, threads=1)
    except BackboneError as error:
        raise UsageError(f"`init=surrogate`: {error}") from None
    found = backbone.classifier()
    if found is None:
        raise UsageError(f"`init=surrogate`: the final classifier layer of {manifest['model']!r} cannot be read "
                         "from its weights; use `init=scratch`")
    weight, bias = found
    return np.asarray(weight, dtype=np.float32), np.asarray(bias, dtype=np.float32)


def prepare_run(config: TrainConfig) -> Prepared:
    return prepare(config.data, config.labels, needs_surrogate=config.fit.init == "surrogate")


def train_head(config: TrainConfig, prepared: Prepared | None = None) -> TrainResult:
    """Train (every fold with --folds), write RUN_DIR, return the metrics of RUN_DIR's head."""
    check(config)
    prepared = prepared or prepare_run(config)
    folds = config.data.folds
    if folds and folds > 1:
        results = []
        for k in range(folds):
            fold_out = None if config.out is None else str(Path(config.out) / f"fold{k}") if k else config.out
            results.append(_train_one(config.with_values(fold=k, out=fold_out), prepared))
        summary = {
            "folds": folds,
            "val_macro_auroc": [r.metrics["val_macro_auroc"] for r in results],
            "passthrough_macro_auroc": [(r.metrics["passthrough"] or {}).get("macro_auroc") for r in results],
        }
        summary["mean_val_macro_auroc"] = float(np.nanmean(summary["val_macro_auroc"]))
        results[0].metrics["cross_validation"] = summary
        if config.out:
            rundir.write_json(config.out, rundir.METRICS, results[0].metrics)
        return results[0]
    return _train_one(config, prepared)


def check(config: TrainConfig) -> None:
    data, fit = config.data, config.fit
    if config.labels.scheme not in SCHEMES:
        raise UsageError(f"`labels` must be one of {', '.join(SCHEMES)}")
    if fit.init not in INITS:
        raise UsageError(f"`init` must be one of {', '.join(INITS)}")
    if fit.init == "surrogate":
        if data.embeddings != data.surrogate:
            raise UsageError("`init=surrogate` needs the embedding model to be the surrogate "
                             f"(got `embeddings={data.embeddings}`, `surrogate={data.surrogate}`)")
        if fit.hidden:
            raise UsageError("`init=surrogate` starts a linear head from the surrogate's classifier; use `hidden=0`")
    if not 0 < data.val_fraction < 1 and not (data.folds and data.folds > 1):
        raise UsageError("`val_fraction` must be between 0 and 1")


def _train_one(config: TrainConfig, prepared: Prepared) -> TrainResult:
    import lightning as L

    fit = config.fit
    started = time.perf_counter()
    quiet_lightning()
    L.seed_everything(config.data.seed, workers=True, verbose=False)
    train_rows, val_rows = split(config.data, prepared)
    windows = prepared.windows
    x = tensor_view(windows.embeddings)
    y = torch.from_numpy(prepared.labels)
    head = heads.build_head(x.shape[1], len(prepared.species), fit.hidden)
    warm = None
    if fit.init == "surrogate":
        weight, bias = surrogate_classifier(windows.embedding_manifest, fit.weights)
        warm = heads.warm_start(head, weight, bias, prepared.mapping.index)
    loss = make_loss(fit.loss, fit.gamma_pos, fit.gamma_neg, fit.clip, fit.sigmoid_s, fit.sigmoid_e)
    y_val = prepared.labels[val_rows]

    initial = None
    best_score, best_state = -np.inf, None
    if warm is not None:  # epoch 0 is the surrogate itself: training must beat it to replace it
        initial_scores = head_scores(head, x, val_rows)
        initial = metrics.macro_auroc(y_val, initial_scores)
        best_score = selection_score(initial, metrics.macro_f1(y_val, sigmoid(initial_scores)))
        best_state = copy.deepcopy(head.state_dict())
    module = lightning_module_class()(head, loss, fit.lr, best_score, best_state)
    train_loader = batch_loader(x, y, train_rows, fit.batch_size, shuffle=True, seed=config.data.seed)
    val_loader = batch_loader(x, y, val_rows, max(fit.batch_size, 4096), shuffle=False)
    root = config.out or None
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    lr = fit.lr
    if fit.lr_find:
        from lightning.pytorch.tuner import Tuner

        with contextlib.redirect_stderr(io.StringIO()) if fit.quiet else contextlib.nullcontext():
            finder = Tuner(make_trainer(fit.epochs, None, root)).lr_find(  # its own tqdm bar
                module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                min_lr=1e-5, max_lr=1.0, num_training=100, update_attr=False,
            )
        suggestion = finder.suggestion() if finder is not None else None
        lr = float(suggestion) if suggestion else fit.lr
        module.lr = lr
        module.history.clear()
        module.best_score, module.best_state, module.best_epoch = best_score, best_state, -1
    trainer = make_trainer(fit.epochs, fit.patience, root)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if module.best_state is not None:
        head.load_state_dict(module.best_state)

    layers = heads.to_layers(head)
    val_logits = numpy_head_logits(layers, windows.embeddings[val_rows])
    result_metrics = _metrics(config, prepared, train_rows, val_rows, val_logits, module, initial, warm, lr,
                              time.perf_counter() - started)
    if config.out:
        write_run_dir(config, prepared, trainer, layers, result_metrics)
    return TrainResult(config.out, result_metrics, layers)


def _metrics(config, prepared, train_rows, val_rows, val_logits, module, initial, warm, lr, seconds) -> dict:
    head = metrics.score(prepared.labels[val_rows], val_logits, prepared.species)
    groups = prepared.groups
    stats = label_stats(prepared.labels, prepared.species, prepared.call)
    return {
        "val_macro_auroc": head["macro_auroc"],
        "val_macro_f1": head["macro_f1"],
        "scored_species": head["scored_species"],
        "per_species_auroc": head["per_species_auroc"],
        "passthrough": passthrough_scores(prepared, val_rows),
        "label_scheme": config.labels.scheme,
        "loss": config.fit.loss,
        "hidden": config.fit.hidden,
        "init": config.fit.init,
        "embeddings": config.data.embeddings,
        "surrogate": config.data.surrogate,
        "mapping": prepared.mapping.as_dict(),
        "counts": {
            "windows": len(groups),
            "train_windows": len(train_rows),
            "val_windows": len(val_rows),
            "train_files": len(np.unique(groups[train_rows])),
            "val_files": len(np.unique(groups[val_rows])),
            "windows_with_call": stats.windows_with_call,
            "train_positives": dict(zip(prepared.species, prepared.labels[train_rows].sum(0).astype(int).tolist())),
            "val_positives": dict(zip(prepared.species, prepared.labels[val_rows].sum(0).astype(int).tolist())),
        },
        "val_files": sorted(np.unique(groups[val_rows]).tolist()),
        "best_epoch": module.best_epoch,  # -1: the initial (warm-started) head was never beaten
        "epochs_run": len(module.history),
        "initial_val_macro_auroc": initial,
        "warm_started_species": warm,
        "lr": lr,
        "history": module.history,
        "seconds": seconds,
    }


def write_run_dir(config: TrainConfig, prepared: Prepared, trainer, layers, result_metrics) -> None:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = prepared.windows.embedding_manifest
    rundir.write_json(out, rundir.CONFIG, {
        "embeddings": config.data.embeddings,
        "surrogate": config.data.surrogate,
        "labels": config.labels.scheme,
        "loss": config.fit.loss,
        "hidden": config.fit.hidden,
        "threshold": config.labels.threshold,
        "seed": config.data.seed,
        "init": config.fit.init,
        "datasets": prepared.windows.datasets,
        "layout": manifest.get("layout"),
        "backbone": {key: manifest.get(key) for key in BACKBONE_KEYS if key in manifest or key != "entry"},
        "embedding_dim": int(prepared.windows.embeddings.shape[1]),
        "n_species": len(prepared.species),
        "mapping": prepared.mapping.as_dict(),
        "train_config": config.flat(),
    })
    rundir.write_json(out, rundir.SPECIES, prepared.species)
    save_head(out, layers)
    heads.export_onnx(layers, out / rundir.HEAD_ONNX)
    rundir.write_json(out, rundir.METRICS, result_metrics)
    trainer.save_checkpoint(out / rundir.CHECKPOINT)  # the module now holds the best head
    plot_curve(result_metrics, out / rundir.CURVE)
