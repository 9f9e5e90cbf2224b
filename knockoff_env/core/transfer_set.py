"""The transfer set: (query-set index, victim output) for every paid query, in a data format.

Stored as preallocated arrays (no per-query Python objects) and saved as ``.npz``, which
loads without unpickling (see :mod:`~knockoff_env.durability.run_dir`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..durability.run_dir import read_transfer_set, write_transfer_set


class TransferSet:
    """Query-set indices of the images queried so far and the victim's answers to them."""

    def __init__(self, capacity: int, num_classes: int):
        self.indices = np.empty(capacity, dtype=np.int64)
        self.outputs = np.empty((capacity, num_classes), dtype=np.float32)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def clear(self) -> None:
        self.size = 0

    def append(self, indices: np.ndarray, outputs: np.ndarray) -> None:
        n = len(indices)
        if self.size + n > len(self.indices):
            raise RuntimeError(f"transfer set full: {self.size} + {n} > capacity {len(self.indices)}")
        self.indices[self.size:self.size + n] = indices
        self.outputs[self.size:self.size + n] = outputs
        self.size += n

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """The filled part: (indices, outputs)."""
        return self.indices[:self.size], self.outputs[:self.size]

    def save(self, path: str | Path) -> Path:
        """Write ``indices`` and ``outputs`` to an ``.npz`` file; returns its path."""
        return write_transfer_set(path, *self.view())

    @classmethod
    def load(cls, path: str | Path) -> "TransferSet":
        """Read a transfer set saved by :meth:`save`; refuses anything that is not one."""
        indices, outputs = read_transfer_set(path)
        out = cls(len(indices), outputs.shape[1])
        out.append(indices, outputs)
        return out
