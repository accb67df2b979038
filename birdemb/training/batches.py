"""Training batches by row index: one gather per batch, never a copy of a subset."""
from __future__ import annotations

import numpy as np
import torch


class IndexBatches(torch.utils.data.Dataset):
    """dataset[index list] -> (x[index], y[index] [, z[index]]): one gather per batch, no
    subset copies. z: the surrogate's logits in species order, for a residual head."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor | None = None):
        self.x, self.y, self.z = x, y, z

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: torch.Tensor):
        if self.z is None:
            return self.x[index], self.y[index]
        return self.x[index], self.y[index], self.z[index]


class RowBatches:
    """Batches of row indices as int64 tensors: shuffled by a seeded generator each epoch, or
    in order. (torch's samplers yield one Python int per row, which costs more than the step.)"""

    def __init__(self, rows: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0):
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        rows = self.rows[torch.randperm(len(self.rows), generator=self.generator)] if self.shuffle else self.rows
        return iter(rows.split(self.batch_size))


def batch_loader(x: torch.Tensor, y: torch.Tensor, rows: np.ndarray, batch_size: int,
                 shuffle: bool, seed: int = 0, z: torch.Tensor | None = None) -> torch.utils.data.DataLoader:
    from torch.utils.data import DataLoader

    return DataLoader(IndexBatches(x, y, z), sampler=RowBatches(rows, batch_size, shuffle, seed),
                      batch_size=None, num_workers=0)
