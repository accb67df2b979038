"""Train a small head on stored embeddings against labels from a surrogate model.

`train_head(TrainConfig(...))` is the core: prepare windows and labels, split by file, fit
with Lightning (L-BFGS or Adam within a budget of steps, the best state on validation macro
AUROC against ground truth), then write the run directory (see birdemb.training.rundir)
with head-versus-passthrough metrics. For species the surrogate knows, the head by default
adds the surrogate's own logit and learns a correction to it (a residual head).
"""
from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from birdemb.backbones.device import choose_device
from birdemb.errors import UsageError
from birdemb.labels.schemes import SCHEMES, label_stats
from birdemb.runtime.head import HeadWeights, save_head
from birdemb.training import heads, metrics, rundir
from birdemb.training.batches import batch_loader
from birdemb.training.config import (
    DEFAULT_LR,
    DEFAULT_STEPS,
    DEVICES,
    INITS,
    LBFGS_MAX_WORK,
    PENALTY_PER_DIM,
    SOLVERS,
    FitOptions,
    TrainConfig,
)
from birdemb.training.curve import plot_curve
from birdemb.training.losses import make_loss, positive_weights
from birdemb.training.module import check_interval, lightning_module_class, make_trainer, quiet_lightning
from birdemb.training.prepare import (
    Prepared,
    check_training_labels,
    head_scores,
    passthrough_scores,
    prepare,
    split,
    validation_target,
)
from birdemb.training.windows import tensor_view

BACKBONE_KEYS = ("model", "entry", "version", "weights_sha256", "options")  # config.json's `backbone`


@dataclass
class TrainResult:
    run_dir: str | None
    metrics: dict
    head: HeadWeights | None = field(repr=False, default=None)

    def line(self) -> str:
        m, p = self.metrics, self.metrics.get("passthrough") or {}
        text = (f"against {m['truth']}: head val macro AUROC {m['val_macro_auroc']:.4f}, macro F1 "
                f"{m['val_macro_f1']:.4f} ({m['counts']['scored_windows']} windows of {m['counts']['val_files']} "
                "held-out files)")
        if p:
            text += f" | passthrough: AUROC {p['macro_auroc']:.4f}, F1 {p['macro_f1']:.4f}"
        return text


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
    if fit.init == "surrogate" and data.embeddings != data.surrogate:
        raise UsageError("`init=surrogate` needs the embedding model to be the surrogate "
                         f"(got `embeddings={data.embeddings}`, `surrogate={data.surrogate}`)")
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


def residual_species(config: TrainConfig, prepared: Prepared, train_rows: np.ndarray) -> np.ndarray | None:
    """Which species add the surrogate's own logit (`init` auto or surrogate): those it knows,
    when the embeddings are the surrogate's own (inference then reads both outputs of one
    model) and its logit is finite on every training window. None: a plain head."""
    if (config.fit.init == "scratch" or config.data.embeddings != config.data.surrogate
            or prepared.species_logits is None):
        residual = None
    else:
        residual = (prepared.mapping.index >= 0) & np.isfinite(prepared.species_logits[train_rows]).all(axis=0)
        residual = residual if residual.any() else None
    return residual


def head_weights(layers: list, prepared: Prepared, residual: np.ndarray | None) -> HeadWeights:
    """The exported head: dense layers, and per species the stored logit column it adds."""
    return HeadWeights(layers, None if residual is None else np.where(residual, prepared.mapping.index, -1))


def check_finite_weights(weights: HeadWeights) -> None:
    """No head with a NaN or infinite weight is scored, saved or bundled."""
    bad = sum(int(np.size(a) - np.isfinite(a).sum()) for layer in weights.layers for a in layer)
    if bad:
        raise UsageError(f"training diverged: the head holds {bad} NaN or infinite weights; try a smaller `lr`, "
                         "a larger `penalty` or `solver=adam`")


def accelerator(device: str) -> str:
    """Lightning's accelerator for `device` (auto | cpu | cuda): both solvers, Adam and L-BFGS, run there."""
    return choose_device(device)


def _train_one(config: TrainConfig, prepared: Prepared) -> TrainResult:
    import lightning as L

    fit = config.fit
    started = time.perf_counter()
    quiet_lightning()
    L.seed_everything(config.data.seed, workers=True, verbose=False)
    train_rows, val_rows = split(config.data, prepared)
    windows = prepared.windows
    check_training_labels(prepared, config.labels, train_rows)
    x = tensor_view(windows.embeddings)  # finite: `prepare` left out the windows holding NaN or inf
    y = torch.from_numpy(prepared.labels)
    head = heads.build_head(x.shape[1], len(prepared.species), fit.hidden)
    if fit.standardize:
        head[0].fit(windows.embeddings[train_rows])
    prevalence = np.clip(prepared.labels[train_rows].mean(axis=0), 1e-4, 1 - 1e-4)
    prior_bias = np.log(prevalence / (1 - prevalence))  # a row trained from scratch starts at the base rate
    head.set_classifier(head.classifier_weight().detach(), torch.from_numpy(prior_bias.astype(np.float32)))
    residual = residual_species(config, prepared, train_rows)
    if residual is not None or fit.init == "surrogate":
        heads.residual_start(head, np.zeros(len(prepared.species), bool) if residual is None else residual,
                             heads.LOW_BIAS if fit.init == "surrogate" else prior_bias)
    z = None if residual is None else tensor_view(prepared.species_logits)
    solver = solver_for(fit, float(len(train_rows)) * x.shape[1] * len(prepared.species))
    batch = len(train_rows) if solver == "lbfgs" else min(fit.batch_size, len(train_rows))
    per_pass = -(-len(train_rows) // batch)
    steps = fit.steps if fit.steps is not None else (
        fit.epochs * per_pass if fit.epochs is not None else DEFAULT_STEPS[solver])
    lr = fit.lr if fit.lr is not None else DEFAULT_LR[solver]
    penalty = fit.penalty if fit.penalty is not None else PENALTY_PER_DIM * x.shape[1] / len(train_rows)
    pos_weight = torch.from_numpy(positive_weights(prepared.labels[train_rows])) if fit.pos_weight else None
    loss = make_loss(fit.loss, fit.gamma_pos, fit.gamma_neg, fit.clip, fit.sigmoid_s, fit.sigmoid_e,
                     pos_weight=pos_weight)
    check_rows, check_truth, target_name = validation_target(prepared, val_rows)
    module = lightning_module_class()(
        head, loss, lr, solver, x[torch.as_tensor(check_rows)], check_truth, penalty,
        per_species=head.is_linear, patience=fit.patience, check_every=check_interval(steps),
        residual=residual, z_val=None if z is None else z[torch.as_tensor(check_rows)],
    )
    module.check(initial=True)  # the starting point (the surrogate itself, for residual species) is a candidate
    initial = module.history[0]["val_macro_auroc"]
    train_loader = batch_loader(x, y, train_rows, batch, shuffle=solver != "lbfgs", seed=config.data.seed, z=z)
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

    weights = head_weights(heads.to_layers(head), prepared, residual)
    check_finite_weights(weights)
    result_metrics = _metrics(config, prepared, train_rows, val_rows, (check_rows, check_truth, target_name), weights,
                              module, initial,
                              {"solver": solver, "steps": steps, "batch_size": batch, "lr": lr, "penalty": penalty,
                               "selection": target_name, "device": device},
                              time.perf_counter() - started)
    if config.out:
        write_run_dir(config, prepared, head, weights, result_metrics)
    return TrainResult(config.out, result_metrics, weights)


def _metrics(config, prepared, train_rows, val_rows, target, weights, module, initial, fitted, seconds) -> dict:
    """Ground truth first (folder labels or annotations of the held-out files, window and file
    level, passthrough scored the same way beside the head); then agreement with the
    surrogate's own labels. `target`: validation_target's (rows, truth, name), as selected on."""
    check_rows, check_truth, target_name = target
    head_logits = head_scores(weights, prepared, check_rows)
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
            "head": metrics.score(prepared.labels[agreement_rows], head_scores(weights, prepared, agreement_rows),
                                  prepared.species),
            "passthrough": passthrough_scores(prepared, agreement_rows, prepared.labels[agreement_rows]),
        }
    result.update({
        "label_scheme": config.labels.scheme,
        "loss": config.fit.loss,
        "hidden": config.fit.hidden,
        "init": config.fit.init,
        "residual": weights.uses_backbone_logits,
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
            "bad_windows": prepared.bad_windows,  # left out: embedding or logits held NaN or inf
            "train_positives": dict(zip(prepared.species, prepared.labels[train_rows].sum(0).astype(int).tolist())),
            "val_positives": dict(zip(prepared.species, prepared.labels[val_rows].sum(0).astype(int).tolist())),
        },
        "val_files": sorted(np.unique(groups[val_rows]).tolist()),
        "best_step": module.best_step,  # -1: the starting head was never beaten
        "checks": len(module.history),
        "initial_val_macro_auroc": initial,
        "residual_species": int((weights.residual >= 0).sum()) if weights.uses_backbone_logits else 0,
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


def write_run_dir(config: TrainConfig, prepared: Prepared, head, weights: HeadWeights, result_metrics) -> None:
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
    save_head(out, weights.layers, weights.residual)
    heads.export_onnx(weights.layers, out / rundir.HEAD_ONNX, weights.residual,
                      None if prepared.windows.logits is None else prepared.windows.logits.shape[1])
    rundir.write_json(out, rundir.METRICS, result_metrics)
    torch.save({"state_dict": {f"head.{k}": v.cpu() for k, v in head.state_dict().items()},  # the best head
                "train_config": config.flat()}, out / rundir.CHECKPOINT)
    plot_curve(result_metrics, out / rundir.CURVE)
