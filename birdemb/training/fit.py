"""Train a small head on stored embeddings against labels from a surrogate model.

`train_head(TrainConfig(...))` is the core: prepare windows and labels, split by file, fit
with Lightning (Adam, early stopping and best state on validation macro AUROC), then write
the run directory (see birdemb.training.rundir) with head-versus-passthrough metrics.
"""
from __future__ import annotations

import contextlib
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
from birdemb.runtime.head import save_head
from birdemb.training import heads, metrics, rundir
from birdemb.training.batches import batch_loader
from birdemb.training.config import (
    DEFAULT_LR,
    DEFAULT_STEPS,
    DEVICES,
    INITS,
    LBFGS_MAX_WORK,
    PENALTY_WINDOWS,
    SOLVERS,
    FitOptions,
    TrainConfig,
)
from birdemb.training.curve import plot_curve
from birdemb.training.losses import make_loss, positive_weights
from birdemb.training.module import check_interval, lightning_module_class, make_trainer, quiet_lightning
from birdemb.training.prepare import Prepared, passthrough_scores, prepare, split, validation_target
from birdemb.training.windows import tensor_view

BACKBONE_KEYS = ("model", "entry", "version", "weights_sha256", "options")  # config.json's `backbone`


@dataclass
class TrainResult:
    run_dir: str | None
    metrics: dict
    head_layers: list = field(repr=False, default_factory=list)

    def line(self) -> str:
        m, p = self.metrics, self.metrics.get("passthrough") or {}
        text = (f"against {m['truth']}: head val macro AUROC {m['val_macro_auroc']:.4f}, macro F1 "
                f"{m['val_macro_f1']:.4f} ({m['counts']['scored_windows']} windows of {m['counts']['val_files']} "
                "held-out files)")
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
    for name, value, allowed in (("init", fit.init, INITS), ("solver", fit.solver, SOLVERS),
                                 ("device", fit.device, DEVICES)):
        if value not in allowed:
            raise UsageError(f"`{name}` must be one of {', '.join(allowed)}")
    if fit.init == "surrogate":
        if data.embeddings != data.surrogate:
            raise UsageError("`init=surrogate` needs the embedding model to be the surrogate "
                             f"(got `embeddings={data.embeddings}`, `surrogate={data.surrogate}`)")
        if fit.hidden:
            raise UsageError("`init=surrogate` starts a linear head from the surrogate's classifier; use `hidden=0`")
    if fit.solver == "lbfgs" and fit.hidden:
        raise UsageError("`solver=lbfgs` fits linear heads; use `solver=adam` with `hidden`")
    if fit.lr_find and solver_for(fit) == "lbfgs":
        raise UsageError("`lr_find` tunes Adam's learning rate; use `solver=adam` with it")
    if not 0 < data.val_fraction < 1 and not (data.folds and data.folds > 1):
        raise UsageError("`val_fraction` must be between 0 and 1")


def solver_for(fit: FitOptions, work: float = 0.0) -> str:
    """Full-batch L-BFGS for a linear head (the convex problem sklearn solves) while one pass
    over the training windows is cheap (`work` = windows x dim x species <= LBFGS_MAX_WORK,
    about 0.1 s a pass here), minibatch Adam otherwise: above that, Adam's steps reach the
    same place sooner."""
    if fit.solver != "auto":
        return fit.solver
    return "adam" if fit.hidden or work > LBFGS_MAX_WORK else "lbfgs"


def warm_init(config: TrainConfig, prepared: Prepared) -> bool:
    """Start from the surrogate's classifier rows? `init=surrogate` always; `init=auto` when
    the embeddings are the surrogate's own, the head is linear and the surrogate knows a species."""
    fit = config.fit
    if fit.init == "surrogate":
        return True
    return (fit.init == "auto" and not fit.hidden and config.data.embeddings == config.data.surrogate
            and prepared.species_logits is not None and bool((prepared.mapping.index >= 0).any()))


def accelerator(device: str) -> str:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UsageError("`device=cuda`: torch sees no CUDA device here")
        return "cuda"
    return "cpu"


def _train_one(config: TrainConfig, prepared: Prepared) -> TrainResult:
    import lightning as L

    fit = config.fit
    started = time.perf_counter()
    quiet_lightning()
    L.seed_everything(config.data.seed, workers=True, verbose=False)
    train_rows, val_rows = split(config.data, prepared)
    windows = prepared.windows
    x = tensor_view(windows.embeddings)
    if not np.isfinite(windows.embeddings[train_rows]).all():
        raise UsageError(f"{config.data.store}: the {config.data.embeddings} embeddings of the training windows "
                         "hold NaN or infinite values")
    y = torch.from_numpy(prepared.labels)
    head = heads.build_head(x.shape[1], len(prepared.species), fit.hidden)
    if fit.standardize:
        head[0].fit(windows.embeddings[train_rows])
    prevalence = np.clip(prepared.labels[train_rows].mean(axis=0), 1e-4, 1 - 1e-4)
    prior_bias = np.log(prevalence / (1 - prevalence))  # a row trained from scratch starts at the base rate
    head.set_classifier(head.classifier_weight().detach(), torch.from_numpy(prior_bias.astype(np.float32)))
    warm = anchor = warm_note = None
    if warm_init(config, prepared):
        try:
            weight, bias = surrogate_classifier(windows.embedding_manifest, fit.weights)
        except UsageError as error:
            if fit.init == "surrogate":
                raise
            weight = None
            warm_note = f"started from scratch: {error}"  # `init=auto` warm-starts only where it can
        if weight is not None:
            missing = heads.LOW_BIAS if fit.init == "surrogate" else prior_bias
            warm = heads.warm_start(head, weight, bias, prepared.mapping.index, missing)
            anchor = head.classifier_weight().detach().clone()  # the penalty pulls towards the surrogate's rows
    solver = solver_for(fit, float(len(train_rows)) * x.shape[1] * len(prepared.species))
    batch = len(train_rows) if solver == "lbfgs" else min(fit.batch_size, len(train_rows))
    per_pass = -(-len(train_rows) // batch)
    steps = fit.steps if fit.steps is not None else (
        fit.epochs * per_pass if fit.epochs is not None else DEFAULT_STEPS[solver])
    lr = fit.lr if fit.lr is not None else DEFAULT_LR[solver]
    penalty = fit.penalty if fit.penalty is not None else PENALTY_WINDOWS / len(train_rows)
    pos_weight = torch.from_numpy(positive_weights(prepared.labels[train_rows])) if fit.pos_weight else None
    loss = make_loss(fit.loss, fit.gamma_pos, fit.gamma_neg, fit.clip, fit.sigmoid_s, fit.sigmoid_e,
                     pos_weight=pos_weight)
    check_rows, check_truth, target_name = validation_target(prepared, val_rows)
    module = lightning_module_class()(
        head, loss, lr, solver, x[torch.as_tensor(check_rows)], check_truth, penalty, anchor,
        per_species=head.is_linear, patience=fit.patience, check_every=check_interval(steps),
        warm_species=(prepared.mapping.index >= 0) if warm is not None else None,
    )
    module.check(initial=True)  # the starting point (the surrogate's rows, for a warm start) is a candidate
    initial = module.history[0]["val_macro_auroc"]
    train_loader = batch_loader(x, y, train_rows, batch, shuffle=solver != "lbfgs", seed=config.data.seed)
    root = config.out or None
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    if fit.lr_find:
        from lightning.pytorch.tuner import Tuner

        with contextlib.redirect_stderr(io.StringIO()) if fit.quiet else contextlib.nullcontext():
            finder = Tuner(make_trainer(steps, root)).lr_find(  # its own tqdm bar
                module, train_dataloaders=train_loader, min_lr=1e-5, max_lr=1.0, num_training=100, update_attr=False)
        suggestion = finder.suggestion() if finder is not None else None
        module.lr = lr = float(suggestion) if suggestion else lr
        module.restore_best()
        module.history = module.history[:1]
    device = accelerator(fit.device)
    trainer = make_trainer(steps, root, device)
    if steps > 0:
        trainer.fit(module, train_dataloaders=train_loader)
    module.restore_best()
    head.cpu()

    layers = heads.to_layers(head)
    result_metrics = _metrics(config, prepared, train_rows, val_rows, (check_rows, check_truth, target_name), layers,
                              module, initial, warm,
                              {"solver": solver, "steps": steps, "batch_size": batch, "lr": lr, "penalty": penalty,
                               "selection": target_name, "device": device, "warm_note": warm_note},
                              time.perf_counter() - started)
    if config.out:
        write_run_dir(config, prepared, head, layers, result_metrics)
    return TrainResult(config.out, result_metrics, layers)


def _metrics(config, prepared, train_rows, val_rows, target, layers, module, initial, warm, fitted, seconds) -> dict:
    """Ground truth first (folder labels or annotations of the held-out files, window and file
    level, passthrough scored the same way beside the head); then agreement with the
    surrogate's own labels. `target`: validation_target's (rows, truth, name), as selected on."""
    embeddings = prepared.windows.embeddings
    check_rows, check_truth, target_name = target
    head_logits = numpy_head_logits(layers, embeddings[check_rows])
    if not np.isfinite(head_logits).all():
        raise UsageError("training diverged: the head gives NaN or infinite scores on the validation windows")
    head = metrics.score(check_truth, head_logits, prepared.species)
    groups = prepared.groups
    stats = label_stats(prepared.labels, prepared.species, prepared.call)
    result = {
        "val_macro_auroc": head["macro_auroc"],
        "val_macro_f1": head["macro_f1"],
        "scored_species": head["scored_species"],
        "per_species_auroc": head["per_species_auroc"],
        "truth": target_name,
        "passthrough": passthrough_scores(prepared, check_rows, check_truth),
        "files": file_scores(prepared, check_rows, check_truth, head_logits),
    }
    if target_name != "training labels":  # the scheme's labels on the same windows: agreement with the surrogate
        agreement_rows = val_rows[prepared.usable[val_rows]]
        result["agreement_with_labels"] = {
            "head": metrics.score(prepared.labels[agreement_rows], numpy_head_logits(layers, embeddings[agreement_rows]),
                                  prepared.species),
            "passthrough": passthrough_scores(prepared, agreement_rows, prepared.labels[agreement_rows]),
        }
    result.update({
        "label_scheme": config.labels.scheme,
        "loss": config.fit.loss,
        "hidden": config.fit.hidden,
        "init": config.fit.init,
        "warm_start": warm is not None,
        "embeddings": config.data.embeddings,
        "surrogate": config.data.surrogate,
        "mapping": prepared.mapping.as_dict(),
        "counts": {
            "windows": len(groups),
            "train_windows": len(train_rows),
            "val_windows": len(val_rows),
            "scored_windows": len(check_rows),
            "train_files": len(np.unique(groups[train_rows])),
            "val_files": len(np.unique(groups[val_rows])),
            "windows_with_call": stats.windows_with_call,
            "train_positives": dict(zip(prepared.species, prepared.labels[train_rows].sum(0).astype(int).tolist())),
            "val_positives": dict(zip(prepared.species, prepared.labels[val_rows].sum(0).astype(int).tolist())),
        },
        "val_files": sorted(np.unique(groups[val_rows]).tolist()),
        "best_step": module.best_step,  # -1: the starting head was never beaten
        "checks": len(module.history),
        "initial_val_macro_auroc": initial,
        "warm_started_species": warm,
        "fit": fitted,
        "history": module.history,
        "seconds": seconds,
    })
    return result


def file_scores(prepared: Prepared, rows: np.ndarray, truth: np.ndarray, head_logits: np.ndarray) -> dict:
    """File level: per held-out file, the max over its windows, for the head and passthrough."""
    y_file, s_file, _ = metrics.file_level(truth, head_logits, prepared.groups[rows])
    out = {"head_macro_auroc": metrics.macro_auroc(y_file, s_file), "files": int(len(y_file))}
    if prepared.species_logits is not None:
        _, p_file, _ = metrics.file_level(truth, prepared.species_logits[rows], prepared.groups[rows])
        out["passthrough_macro_auroc"] = metrics.macro_auroc(y_file, p_file)
    return out


def write_run_dir(config: TrainConfig, prepared: Prepared, head, layers, result_metrics) -> None:
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
    torch.save({"state_dict": {f"head.{k}": v.cpu() for k, v in head.state_dict().items()},  # the best head
                "train_config": config.flat()}, out / rundir.CHECKPOINT)
    plot_curve(result_metrics, out / rundir.CURVE)
