"""What a head-training run is asked to do, in three groups that other commands reuse:
DataOptions (which windows, which species, the split), LabelOptions (the label scheme) and
FitOptions (the head, loss and optimiser). `evaluate` and `labels` need only the first two.

The run directory keeps the config flat (config.json's `train_config`, as it always was):
`flat()` writes that form and `from_flat()` reads it back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from birdemb.backbones.device import DEVICES  # noqa: F401  (one list for every torch user; commands read it here)

INITS = ("auto", "scratch", "surrogate")
SOLVERS = ("auto", "lbfgs", "adam")
BAD_WINDOWS = ("skip", "error")  # windows holding NaN/inf: leave them out with a warning, or refuse


@dataclass
class DataOptions:
    store: str
    embeddings: str  # model whose embeddings feed the head
    surrogate: str  # model whose logits make the labels
    datasets: list[str] | None = None  # None: every dataset of the embedding model
    metadata: str | None = None
    taxonomy: str | None = None
    species_list: str | None = None
    val_fraction: float = 0.2
    folds: int = 0  # > 1: k-fold by file; RUN_DIR holds fold 0, RUN_DIR/fold<k> the others
    fold: int = 0
    seed: int = 0  # shuffles the split and seeds training
    bad_windows: str = "skip"  # windows holding NaN/inf: skip (left out, with a warning) | error


@dataclass
class LabelOptions:
    scheme: str = "species"  # species | pseudo | folder | annotations (flat key: `labels`)
    threshold: float = 0.5
    secondary: bool = False
    call_rule: str = "list"  # a call: a species of the list is a surrogate positive (eq. 2); or "any-bird"
    annotations: str | None = None  # strong labels (file or folder): with scheme annotations, the labels


@dataclass
class FitOptions:
    loss: str = "bce"  # bce | asl | sigmoidf1
    hidden: int = 0  # 0: linear head; else one hidden layer with BatchNorm and ReLU
    steps: int | None = None  # optimiser steps; None: the solver's default budget (DEFAULT_STEPS)
    epochs: int | None = None  # or passes over the training windows (steps = epochs x batches per pass)
    batch_size: int = 256  # Adam's batches, never larger than the training windows
    lr: float | None = None  # None: 1 for L-BFGS, 1e-3 for Adam
    lr_find: bool = False
    solver: str = "auto"  # auto: full-batch L-BFGS for a linear head, Adam otherwise
    init: str = "auto"  # auto | scratch | surrogate: see INITS
    patience: int = 10  # validation checks without progress before stopping (0: never stop early)
    penalty: float | None = None  # L2 on the last layer's rows; None: PENALTY_PER_DIM x input dim / training windows
    pos_weight: bool = True  # weight positives by sqrt(negatives / positives) per species
    standardize: bool = True  # train on standardised embeddings (folded into the exported weights)
    device: str = "auto"  # auto | cpu | cuda
    gamma_pos: float = 1.0
    gamma_neg: float = 4.0
    clip: float = 0.05
    sigmoid_s: float = -1.0
    sigmoid_e: float = 0.0
    quiet: bool = True


DEFAULT_STEPS = {"lbfgs": 30, "adam": 2000}  # chosen on the quality benchmark (docs/benchmarks.md)
DEFAULT_LR = {"lbfgs": 1.0, "adam": 1e-3}
LBFGS_ITERATIONS = 20  # line-search iterations inside one L-BFGS optimiser step
# default L2 = this x embedding dim / training windows (BirdNET's 1024-d: 102 / windows), chosen on
# the quality benchmark (docs/benchmarks.md); it scales with the dimension, so 8 features are not
# shrunk like 1,024
PENALTY_PER_DIM = 0.1
LBFGS_MAX_WORK = 2e9  # windows x dim x species up to which `solver=auto` is L-BFGS (then Adam)


_FLAT_NAMES = {"scheme": "labels"}  # group field -> its flat key, where they differ


@dataclass
class TrainConfig:
    data: DataOptions
    labels: LabelOptions = field(default_factory=LabelOptions)
    fit: FitOptions = field(default_factory=FitOptions)
    out: str | None = None  # RUN_DIR; None: train and score without writing

    def flat(self) -> dict:
        """One flat dict (config.json's `train_config`)."""
        values: dict = {}
        for group in (self.data, self.labels, self.fit):
            values.update({_FLAT_NAMES.get(k, k): v for k, v in asdict(group).items()})
        values["out"] = self.out
        return values

    @classmethod
    def from_flat(cls, values: dict) -> TrainConfig:
        """The config from a flat dict; keys no group knows (older or newer runs) are ignored."""

        def pick(group):
            return {f.name: values[_FLAT_NAMES.get(f.name, f.name)] for f in fields(group)
                    if _FLAT_NAMES.get(f.name, f.name) in values}

        return cls(DataOptions(**pick(DataOptions)), LabelOptions(**pick(LabelOptions)),
                   FitOptions(**pick(FitOptions)), values.get("out"))

    def with_values(self, **flat_overrides) -> TrainConfig:
        """A copy with some flat keys changed (e.g. fold=2, out=...)."""
        return TrainConfig.from_flat({**self.flat(), **flat_overrides})
