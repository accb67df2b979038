"""Training batches by row index: one gather per batch, never a copy of a subset."""
from __future__ import annotations

import numpy as np
import torch


class IndexBatches(torch.utils.data.Dataset):
    """dataset[index list] -> (x[index], y[index]): one gather per batch, no subset copies."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: torch.Tensor):
        return self.x[index], self.y[index]


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
                 shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    from torch.utils.data import DataLoader

    return DataLoader(IndexBatches(x, y), sampler=RowBatches(rows, batch_size, shuffle, seed),
                      batch_size=None, num_workers=0)
