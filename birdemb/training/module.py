"""The Lightning side of training: the module that fits a head within a budget of optimiser
steps, validates against ground truth every few steps and keeps the best state, the trainer,
and what selection follows."""
from __future__ import annotations

import copy
import logging
import math
import warnings

import numpy as np
import torch

from birdemb.runtime.head import sigmoid
from birdemb.training import metrics
from birdemb.training.config import LBFGS_ITERATIONS


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")


TIE_BREAK = 1e-3  # log-loss weight: below any AUROC step on a validation set, above rounding


def log_loss(truth: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Mean binary cross-entropy per species (numerically safe for large logits)."""
    z = np.clip(np.asarray(logits, dtype=np.float64), -80, 80)
    return (np.logaddexp(0, z) - np.asarray(truth, dtype=np.float64) * z).mean(axis=0)


def selection_score(auroc: float, loss: float) -> float:
    """What early stopping and the best state follow: macro AUROC, ties broken by the mean
    log loss. On easy data AUROC reaches 1.0 early while the scores are still far from
    calibrated (noise scored at 0.3, say); AUROC alone would keep that first state."""
    return float(auroc if np.isfinite(auroc) else 0.0) - TIE_BREAK * float(loss)


def lightning_module_class():
    import lightning as L

    class HeadModule(L.LightningModule):
        """A head, its loss and optimiser (Adam on batches, or full-batch L-BFGS); every
        `check_every` steps: validation against the ground truth of held-out files, a copy
        of the best state, and early stopping after `patience` checks without progress.

        `residual` (bool [species]): those species' outputs add the surrogate's own logit (z,
        carried in the batches), so the head learns a correction to the surrogate and starts,
        with zero rows, exactly at it. The L2 `penalty` pulls the last layer's rows to zero.

        With `per_species` (linear heads, whose rows train independently), each species keeps
        the row from the check where its own validation score was best; the initial rows (the
        surrogate itself, for residual species) are candidates too, so no species ends below
        where it started."""

        def __init__(self, head, loss, lr: float, solver: str, x_val, truth_val, penalty: float = 0.0,
                     per_species: bool = False, patience: int = 0, check_every: int = 1,
                     residual=None, z_val=None):
            super().__init__()
            self.head, self.loss, self.lr, self.solver = head, loss, lr, solver
            self.x_val, self.truth_val, self.z_val = x_val, truth_val, z_val
            self.penalty = penalty
            self.per_species, self.patience, self.check_every = per_species, patience, max(1, check_every)
            self.residual = None if residual is None or not np.any(residual) else torch.as_tensor(
                np.asarray(residual, dtype=bool))
            self.automatic_optimization = solver != "lbfgs"
            self.history: list[dict] = []
            self.best_score, self.best_state, self.best_step = -np.inf, None, -1
            self.best_species: np.ndarray | None = None
            self.checks_without_progress = 0
            self._loss_sum, self._loss_count = 0.0, 0

        def forward(self, x, z=None):
            out = self.head(x)
            if self.residual is None:
                return out
            return out + torch.where(self.residual.to(out.device), z.to(out.device), torch.zeros((), device=out.device))

        def objective(self, x, y, z=None):
            loss = self.loss(self(x, z), y)
            if self.penalty:
                weight = self.head.classifier_weight()
                loss = loss + 0.5 * self.penalty * (weight ** 2).sum() / weight.shape[0]
            return loss

        def training_step(self, batch, batch_index):
            x, y, z = batch if len(batch) == 3 else (*batch, None)
            if self.solver == "lbfgs":
                optimiser = self.optimizers()

                def closure():
                    optimiser.zero_grad()
                    value = self.objective(x, y, z)
                    self.manual_backward(value)
                    return value

                loss = optimiser.step(closure)
            else:
                loss = self.objective(x, y, z)
            self._loss_sum += float(loss.detach()) * len(x)
            self._loss_count += len(x)
            if (self.global_step + (0 if self.solver == "lbfgs" else 1)) % self.check_every == 0:
                self.check()
            return None if self.solver == "lbfgs" else loss

        def validation_logits(self) -> np.ndarray:
            self.head.eval()
            z = self.z_val
            with torch.no_grad():
                out = torch.cat([self(self.x_val[i:i + 8192].to(self.device), None if z is None else z[i:i + 8192])
                                 for i in range(0, len(self.x_val), 8192)]).cpu().numpy()
            self.head.train()
            return out

        def check(self, initial: bool = False) -> None:
            """Score the head on the validation windows; keep it (or its rows) if better."""
            step = -1 if initial else int(self.global_step)
            logits = self.validation_logits()
            per_species = metrics.per_species_auroc(self.truth_val, logits)  # NaN where undefined
            auroc = metrics.macro_mean(per_species)
            f1 = metrics.macro_f1(self.truth_val, sigmoid(logits))
            losses = log_loss(self.truth_val, logits)
            entry = {"step": step, "val_macro_auroc": auroc, "val_macro_f1": f1}
            if self._loss_count:
                entry["train_loss"] = self._loss_sum / self._loss_count
            self._loss_sum, self._loss_count = 0.0, 0
            self.history.append(entry)
            improved = (self._keep_species(per_species - TIE_BREAK * losses, step) if self.per_species else
                        self._keep_whole(selection_score(auroc, losses.mean()), step))
            self.checks_without_progress = 0 if improved else self.checks_without_progress + 1
            if not initial and self.patience and self.checks_without_progress >= self.patience:
                self.trainer.should_stop = True

        def _keep_whole(self, score: float, step) -> bool:
            if score > self.best_score + 1e-9:
                self.best_score, self.best_step = score, step
                self.best_state = copy.deepcopy(self.head.state_dict())
                return True
            return False

        def _keep_species(self, scores: np.ndarray, step) -> bool:
            """`scores`: per species AUROC minus TIE_BREAK x log loss (NaN: validation cannot rank it)."""
            weight, bias = self.head.classifier_weight().detach(), self.head.classifier_bias().detach()
            if self.best_species is None:
                self.best_species = np.full(len(scores), -np.inf)
                self.best_state = {"weight": weight.clone(), "bias": bias.clone()}
            better = scores > self.best_species + 1e-9
            # validation cannot rank a species (no positive or no negative there): keep the
            # surrogate itself where it started from it, else the latest row, trained longest
            undefined = ~np.isfinite(scores)
            if self.residual is not None:
                undefined &= ~self.residual.numpy()
            take = torch.as_tensor(better | undefined, device=weight.device)
            self.best_state["weight"][take] = weight[take]
            self.best_state["bias"][take] = bias[take]
            self.best_species = np.where(better, scores, self.best_species)
            if better.any():
                self.best_step = step
            finite = self.best_species[np.isfinite(self.best_species)]
            self.best_score = float(finite.mean()) if len(finite) else -np.inf
            return bool(better.any())

        def restore_best(self) -> None:
            if self.best_state is None:
                return
            if self.per_species:
                self.head.set_classifier(self.best_state["weight"], self.best_state["bias"])
            else:
                self.head.load_state_dict(self.best_state)

        def configure_optimizers(self):
            if self.solver == "lbfgs":
                return torch.optim.LBFGS(self.head.parameters(), lr=self.lr, max_iter=LBFGS_ITERATIONS,
                                         history_size=20, line_search_fn="strong_wolfe")
            return torch.optim.Adam(self.head.parameters(), lr=self.lr)

    return HeadModule


def check_interval(steps: int, checks: int = 25) -> int:
    """Validate about `checks` times over a budget of `steps` optimiser steps."""
    return max(1, math.ceil(steps / checks))


def make_trainer(max_steps: int, root: str | None, accelerator: str = "cpu"):
    import lightning as L

    quiet_lightning()
    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, accelerator=accelerator, devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=root,
    )

