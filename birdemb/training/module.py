"""The Lightning side of training: the module that fits a head and keeps its best state,
the trainer, and what selection follows."""
from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import torch

from birdemb.training import metrics


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")


def lightning_module_class():
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

    quiet_lightning()
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
