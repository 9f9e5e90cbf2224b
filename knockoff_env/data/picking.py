"""Images the agent names itself, and images it makes: the query set's side of
:class:`~knockoff_env.core.actions.ImageChoice` (ActiveThief) and of synthetic queries
(Jacobian-based augmentation).

* **Chosen images.** :meth:`take` removes named images from their labels' pools (each is
  swapped to its pool's cursor, which then moves past it), so the pools keep their one
  invariant — ``order[cursor:end]`` is what is left — and a label draw never returns a chosen
  image. :meth:`untake` gives the last taken images back (a victim call that failed, the
  images after a detector's alarm).
* **Synthetic images.** :meth:`add_synthetic` appends images made by the attacker (not part of
  P_A) under new indices ``len(query_set)``, ``len(query_set) + 1``, …, each with the label
  position of the image it was made from; they can be chosen once each, like pool images,
  are fetched by :meth:`fetch` like any other, are part of the checkpointed state and are
  cleared by ``reset``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

EMPTY = np.empty(0, np.int64)


class ImagePicking:
    """Mixed into :class:`~knockoff_env.data.query_set.QuerySet` (which provides the pools)."""

    synthetic: torch.Tensor | None = None  # (M, ...) images made by the attacker, on the CPU
    synthetic_positions = EMPTY  # label position of each synthetic image (its parent's)
    synthetic_queried = np.empty(0, bool)

    # --- fetching --------------------------------------------------------------------------
    def fetch(self, index: np.ndarray) -> torch.Tensor:
        """The images at ``index`` (pool and synthetic indices alike), in order."""
        if self.synthetic is None:  # the usual case: one call more than the pool's fetch
            return self.fetch_pool(index)
        index = np.asarray(index, np.int64)
        n = len(self)
        if len(index) == 0 or index.max() < n:
            return self.fetch_pool(index)
        real = index < n
        if real.all():
            return self.fetch_pool(index)
        made = self.synthetic[torch.from_numpy(index[~real] - n)]
        if not real.any():
            return made
        pool = self.fetch_pool(index[real])
        out = torch.empty((len(index), *made.shape[1:]), dtype=made.dtype)
        out[torch.from_numpy(real)] = pool.to(out.dtype)
        out[torch.from_numpy(~real)] = made
        return out

    @property
    def size_with_synthetic(self) -> int:
        return len(self) + len(self.synthetic_queried)

    def position_of(self, index: int) -> int:
        """The label position (flat order) of the image at ``index``."""
        n = len(self)
        return int(self.positions[index]) if index < n else int(self.synthetic_positions[index - n])

    # --- chosen images ---------------------------------------------------------------------
    def unqueried(self) -> np.ndarray:
        """Indices of every image not queried yet (pool, then synthetic), sorted."""
        parts = [self.order[c:e] for c, e in zip(self.cursor.tolist(), self.pool_ends.tolist()) if e > c]
        pool = np.sort(np.concatenate(parts)) if parts else EMPTY
        return np.concatenate([pool, np.flatnonzero(~self.synthetic_queried) + len(self)])

    def take(self, indices) -> np.ndarray:
        """Remove the images at ``indices`` from what is left; ValueError (and nothing taken)
        when one is out of range, named twice or queried already."""
        index = check_indices(indices, self.size_with_synthetic)
        n = len(self)
        real, made = index[index < n], index[index >= n] - n
        for i in real.tolist():
            p = int(self.positions[i])
            if not (self.order[self.cursor[p]:self.pool_ends[p]] == i).any():
                raise ValueError(f"image {i} was queried already this episode; choose images not queried yet "
                                 "(query_set.unqueried() lists them)")
        if self.synthetic_queried[made].any():
            raise ValueError(f"synthetic images {(made[self.synthetic_queried[made]] + n).tolist()} were queried "
                             "already this episode; each image is queried at most once")
        for i in real.tolist():  # all checked: now take them, each swapped to its pool's cursor
            p = int(self.positions[i])
            start = int(self.cursor[p])
            spot = start + int(np.flatnonzero(self.order[start:self.pool_ends[p]] == i)[0])
            self.order[start], self.order[spot] = self.order[spot], self.order[start]
            self.cursor[p] += 1
        self.synthetic_queried[made] = True
        return index

    def untake(self, indices) -> None:
        """Give back images taken last by :meth:`take` (their query was never answered)."""
        n = len(self)
        for i in np.asarray(indices, np.int64)[::-1].tolist():
            if i >= n:
                self.synthetic_queried[i - n] = False
                continue
            p = int(self.positions[i])
            self.cursor[p] -= 1
            if self.order[self.cursor[p]] != i:
                self.cursor[p] += 1
                raise RuntimeError(f"image {i} is not the last image taken from its pool; give back in reverse order")

    # --- synthetic images ------------------------------------------------------------------
    def add_synthetic(self, images: torch.Tensor, parents: np.ndarray) -> np.ndarray:
        """Append images made from the images at ``parents`` (they inherit their labels); their new indices."""
        parents = np.asarray(parents, np.int64)
        if len(images) != len(parents):
            raise ValueError(f"add_synthetic: {len(images)} images but {len(parents)} parents")
        images = images.detach().cpu()
        start = self.size_with_synthetic
        positions = np.fromiter((self.position_of(int(p)) for p in parents), np.int64, len(parents))
        self.synthetic = images.clone() if self.synthetic is None else torch.cat([self.synthetic, images])
        self.synthetic_positions = np.concatenate([self.synthetic_positions, positions])
        self.synthetic_queried = np.concatenate([self.synthetic_queried, np.zeros(len(parents), bool)])
        return np.arange(start, start + len(parents), dtype=np.int64)

    def clear_synthetic(self) -> None:
        self.synthetic, self.synthetic_positions, self.synthetic_queried = None, EMPTY, np.empty(0, bool)

    def synthetic_state(self) -> dict[str, np.ndarray | torch.Tensor]:
        """The synthetic images for a checkpoint (nothing when there are none)."""
        if self.synthetic is None:
            return {}
        return {"synthetic": self.synthetic, "synthetic_positions": self.synthetic_positions,
                "synthetic_queried": self.synthetic_queried}

    def load_synthetic_state(self, state: Mapping) -> None:
        self.clear_synthetic()
        if "synthetic" in state:
            self.synthetic = torch.as_tensor(np.asarray(state["synthetic"])).clone()
            self.synthetic_positions = np.asarray(state["synthetic_positions"], np.int64).copy()
            self.synthetic_queried = np.asarray(state["synthetic_queried"], bool).copy()


def check_indices(indices, size: int) -> np.ndarray:
    """``indices`` as a 1-D int64 array of distinct image indices in ``[0, size)``; else ValueError."""
    index = np.asarray(indices)
    if index.ndim != 1 or len(index) == 0 or index.dtype.kind not in "iu":
        raise ValueError(f"chosen images {indices!r} must be a non-empty 1-D sequence of integer image indices")
    index = index.astype(np.int64)
    bad = index[(index < 0) | (index >= size)]
    if bad.size:
        raise ValueError(f"chosen images {bad[:10].tolist()} are outside the query set's {size} images "
                         "(indices 0 … size − 1)")
    if len(np.unique(index)) != len(index):
        raise ValueError(f"chosen images {index.tolist()} name an image twice; each image is queried at most once")
    return index
