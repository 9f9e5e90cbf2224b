"""Gathering a step's images into one batch tensor, fast enough to keep the models busy.

A tensor query set is gathered with one ``index_select``. A Dataset query set decodes and
transforms each image in ``__getitem__``, which dominates a step on real images; with
``workers > 0`` those calls run on a thread pool (PIL decoding and torchvision transforms
release the GIL). With ``pin_memory`` the batch is written into page-locked memory so its
copy to the GPU can be asynchronous (``non_blocking=True``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


class ImageFetcher:
    """Callable ``fetch(index) -> (n, ...) tensor`` over a tensor or a map-style Dataset.

    Args:
        images: an (N, ...) tensor, or a Dataset of ``(image, label)``.
        workers: threads decoding Dataset items in parallel (0: in the caller's thread).
        pin_memory: return batches in pinned memory (only useful, and only honoured,
            when CUDA is available).
    """

    def __init__(self, images: Any, workers: int = 0, pin_memory: bool = False):
        if isinstance(workers, bool) or int(workers) != workers or workers < 0:
            raise ValueError(f"fetch_workers={workers!r} must be an integer ≥ 0")
        self.images = images
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self._pool = ThreadPoolExecutor(int(workers), "knockoff-fetch") \
            if workers and not isinstance(images, torch.Tensor) else None

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        if isinstance(self.images, torch.Tensor):
            batch = self.images.index_select(0, torch.from_numpy(np.asarray(index, np.int64)))  # [] costs 3×
        elif hasattr(self.images, "load_batch"):  # decodes a whole batch at once (maybe on the GPU)
            batch = self.images.load_batch(np.asarray(index, np.int64))
            return batch.pin_memory() if self.pin_memory and batch.device.type == "cpu" else batch
        else:
            get = self._item
            items = list(self._pool.map(get, index)) if self._pool and len(index) > 1 else [get(i) for i in index]
            batch = torch.stack(items)
        return batch.pin_memory() if self.pin_memory else batch

    def _item(self, i) -> torch.Tensor:
        return torch.as_tensor(self.images[int(i)][0])

    def close(self) -> None:
        """Stop the worker threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
