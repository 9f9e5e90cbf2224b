"""The adversary's query set P_A: images with labels Z, a hierarchy over Z, and pools drawn without replacement.

All images are kept in one index array grouped by label (in the hierarchy's order). A
label's group gets its random order the first time the label is drawn from after a ``reset``
(a seed, settled only as far as it is drawn: :mod:`.shuffle`; so a reset costs one array
copy, not a shuffle of all of P_A), and drawing advances that label's pointer: no image is
drawn twice until the next ``reset``, and a step's cost does not depend on the size of the
query set nor of the label's pool.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..checks import is_integer
from ..errors import ConfigError, WrongTypeError
from .fetch import ImageFetcher
from .picking import ImagePicking
from .shuffle import Uniforms, settle

Hierarchy = Mapping[str, Sequence[int]]
INT64_MIN, INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def dataset_labels(dataset: Any) -> np.ndarray:
    """Integer labels of a map-style dataset, read from ``targets``/``samples`` when it has them."""
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr), dtype=np.int64)
    if hasattr(dataset, "samples"):
        return np.asarray([label for _, label in dataset.samples], dtype=np.int64)
    try:
        return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)
    except (TypeError, ValueError, IndexError, KeyError) as err:
        raise ConfigError(f"cannot read integer labels from the {type(dataset).__name__} ({type(err).__name__}: {err})",
                          "give a Dataset whose items are (image, integer label), or one with a `targets` "
                          "attribute") from err


def as_images_and_labels(data: Any, what: str) -> tuple[torch.Tensor | Dataset, np.ndarray]:
    """Accept ``(images tensor, labels)`` or a map-style Dataset of ``(image, label)``."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        try:
            images, labels = torch.as_tensor(images), torch.as_tensor(labels).cpu().reshape(-1)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"{what}: cannot read the images and labels as tensors ({err})",
                              "give (float images tensor of shape (N, ...), N integer labels)") from err
        if labels.is_floating_point() and not (torch.isfinite(labels).all() and (labels == labels.round()).all()):
            raise ConfigError(f"{what}: labels must be integer ids (got {labels.dtype} values that are not whole "
                              "numbers)", "give integer class ids, e.g. labels.long() of the right values")
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim < 2 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{what}: images ({tuple(images.shape)}) and labels ({labels.shape[0]}) "
                             "must have one label per image")
        if not images.is_floating_point():
            raise ValueError(f"{what}: images must be a float tensor (got {images.dtype}); "
                             "scale them to floats the models expect")
        return images, labels
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                     and not isinstance(data, (str, bytes, Mapping))):
        return data, dataset_labels(data)
    raise WrongTypeError(f"{what} is a {type(data).__name__}",
                         "give (images tensor, labels) or a Dataset of (image, label)")


class QuerySet(ImagePicking):
    """P_A with its hierarchy root → coarse nodes → labels and per-label pools.

    Args:
        images: an (N, ...) float tensor, or a map-style Dataset of ``(image, label)``.
        labels: the N integer labels (taken from the dataset when ``images`` is one).
        hierarchy: ``{coarse name: [label ids]}``; each label in exactly one node and each
            with at least one image. Omitted: a single coarse node ``"all"`` holding every label.
        label_names: optional ``{label id: name}`` for logs.
        fetch_workers, pin_memory: how images are gathered (see :class:`ImageFetcher`).
    """

    def __init__(self, images, labels: np.ndarray, hierarchy: Hierarchy | None = None,
                 label_names: Mapping[int, str] | None = None, fetch_workers: int = 0,
                 pin_memory: bool = False):
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            raise ValueError("the query set is empty; it needs at least one image")
        if hierarchy is None:
            hierarchy = {"all": sorted(np.unique(labels).tolist())}
        self.coarse_names, self.label_ids = self._check_hierarchy(hierarchy, labels)
        sizes = [len(hierarchy[name]) for name in self.coarse_names]
        self.coarse_sizes = np.asarray(sizes, dtype=np.int64)
        self.coarse_offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.coarse_of_label = np.repeat(np.arange(len(sizes)), sizes)
        if label_names is not None and not isinstance(label_names, Mapping):
            raise ConfigError(f"label_names={label_names!r} is not a mapping", "give {label id: name} or None")
        self.label_names = {int(k): str(v) for k, v in (label_names or {}).items()}
        self.images = images
        self.fetch_pool = ImageFetcher(images, fetch_workers, pin_memory)  # fetch(): pool and synthetic images

        # position of every image's label in the hierarchy's flat order
        sorter = np.argsort(self.label_ids)
        self.positions = sorter[np.searchsorted(self.label_ids, labels, sorter=sorter)]
        self.pool_sizes = np.bincount(self.positions, minlength=len(self.label_ids)).astype(np.int64)
        self.pool_starts = np.concatenate([[0], np.cumsum(self.pool_sizes)[:-1]]).astype(np.int64)
        self.pool_ends = self.pool_starts + self.pool_sizes
        self._sorted_order = np.argsort(self.positions, kind="stable")
        self.order = self._sorted_order.copy()
        self.cursor = self.pool_starts.copy()
        self.seeds = np.full(len(self.label_ids), -1, np.int64)  # each pool's shuffle seed; -1: not drawn yet
        self.settled = self.pool_starts.copy()  # each pool's order is final up to here
        self.uniforms = Uniforms()  # the pools' scheme (see .shuffle): older runs resume with theirs
        self.rng = np.random.default_rng()

    @staticmethod
    def _check_hierarchy(hierarchy: Hierarchy, labels: np.ndarray) -> tuple[list[str], np.ndarray]:
        if not isinstance(hierarchy, Mapping) or len(hierarchy) == 0:
            raise ValueError("hierarchy must be a non-empty mapping {coarse name: [label ids]}")
        seen: dict[int, str] = {}
        for name, members in hierarchy.items():
            if isinstance(members, (str, bytes)) or not hasattr(members, "__iter__"):
                raise ValueError(f"hierarchy[{name!r}] must be a list of label ids, got {members!r}")
            members = list(members)
            if not members:
                raise ValueError(f"coarse node {name!r} has no labels; drop it or give it at least one")
            for z in members:
                if not is_integer(z) or not INT64_MIN <= z <= INT64_MAX:
                    raise ValueError(f"coarse node {name!r}: label {z!r} is not an integer id (int64)")
                z = int(z)
                if z in seen:
                    raise ValueError(f"label {z} is in both coarse nodes {seen[z]!r} and {name!r}; "
                                     "each label belongs to exactly one coarse node")
                seen[z] = name
        missing = np.setdiff1d(np.unique(labels), np.fromiter(seen, np.int64))
        if missing.size:
            raise ValueError(f"query-set labels {missing[:10].tolist()}{'…' if missing.size > 10 else ''} "
                             "are in no coarse node of the hierarchy; add them to one")
        imageless = np.setdiff1d(np.fromiter(seen, np.int64), labels)
        if imageless.size:
            named = ", ".join(f"{int(z)} (in {seen[int(z)]!r})" for z in imageless[:10])
            raise ConfigError(f"hierarchy labels {named}{'…' if imageless.size > 10 else ''} have no images in "
                              "the query set", "remove them from the hierarchy, or add their images to the query set")
        names = [str(n) for n in hierarchy]
        flat = np.asarray([int(z) for n in hierarchy for z in hierarchy[n]], dtype=np.int64)
        return names, flat

    # --- sizes -----------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.label_ids)

    @property
    def num_coarse(self) -> int:
        return len(self.coarse_names)

    def gather(self, indices: np.ndarray) -> torch.Tensor | Subset:
        """The images at ``indices``: a tensor (in-memory query sets), or a Subset of the query
        dataset, decoded when read (a training DataLoader's workers do it)."""
        if isinstance(self.images, torch.Tensor) or (len(indices) and np.max(indices) >= len(self)):
            return self.fetch(indices)
        return Subset(self.images, np.asarray(indices).tolist())

    def __len__(self) -> int:
        return len(self.positions)

    # --- pools -----------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> None:
        """Refill every pool; each is shuffled with a seed from ``rng`` when first drawn from."""
        np.copyto(self.order, self._sorted_order)  # a canonical start, so a seed fixes the draws
        self.cursor = self.pool_starts.copy()
        self.seeds[:] = -1
        self.settled = self.pool_starts.copy()
        self.rng = rng
        self.clear_synthetic()

    def remaining(self) -> np.ndarray:
        """Images left in each label's pool, in the hierarchy's flat order."""
        return self.pool_ends - self.cursor

    def coarse_remaining(self, remaining: np.ndarray | None = None) -> np.ndarray:
        rem = self.remaining() if remaining is None else remaining
        return np.add.reduceat(rem, self.coarse_offsets)

    def draw(self, position: int, n: int) -> np.ndarray:
        """Take up to ``n`` unqueried images of the label at ``position``; returns their indices."""
        start = self.cursor[position]
        stop = min(start + n, self.pool_ends[position])
        self.upcoming(position, stop - start)
        self.cursor[position] = stop
        return self.order[start:stop]

    def draw_steps(self, plan: Sequence[int], n: int, limit: int) -> list[np.ndarray]:
        """The draws of many steps at once: for each label of ``plan`` in turn, what
        ``draw(label, min(n, images of limit left))`` would take, the same images in the same
        order, with one draw per label (pools get their seeds in order of first draw, as step
        by step). A label with no images left at its turn is a ValueError and nothing
        is drawn; the plan ends early once ``limit`` images are drawn."""
        left, room = self.remaining().tolist(), int(limit)
        takes: list[int] = []
        totals: dict[int, int] = {}  # images per label, the labels in order of first draw
        for step, position in enumerate(plan):
            if room <= 0:
                break
            take = min(n, room, left[position])
            if take <= 0:
                raise ValueError(f"step {step} of the plan names label position {position}, which has no images "
                                 "left by then; plan only labels with images left")
            left[position] -= take
            room -= take
            takes.append(take)
            totals[position] = totals.get(position, 0) + take
        at = {}
        for position, total in totals.items():  # one draw per label
            at[position] = int(self.cursor[position])
            self.draw(position, total)
        steps = []
        for position, take in zip(plan, takes):
            start = at[position]
            steps.append(self.order[start:start + take])
            at[position] = start + take
        return steps

    @property
    def pools(self) -> str:
        """How the pools are shuffled (a scheme of :mod:`.shuffle`); a durable run records it."""
        return self.uniforms.scheme

    @pools.setter
    def pools(self, scheme: str) -> None:
        self.uniforms = Uniforms(scheme)

    @property
    def shuffled(self) -> np.ndarray:
        """Which pools have their order fixed (drawn from since the last reset)."""
        return self.seeds >= 0

    def upcoming(self, position: int, n: int) -> np.ndarray:
        """The next ``n`` images the label at ``position`` will give (a view), settling its order
        that far (drawn from for the first time: its seed is drawn now from the RNG)."""
        cursor = self.cursor[position]
        if self.settled[position] >= cursor + n:  # settled that far already (most draws)
            return self.order[cursor:cursor + n]
        start, end = self.pool_starts[position], self.pool_ends[position]
        if self.seeds[position] < 0 and self.pools == "whole":
            self.rng.shuffle(self.order[cursor:end])
            self.seeds[position], self.settled[position] = 0, end
        elif self.seeds[position] < 0:
            self.seeds[position] = self.rng.integers(INT64_MAX)
        stop = min(cursor + n, end)
        if self.settled[position] < stop:
            done = max(self.settled[position], cursor) - start
            self.settled[position] = start + settle(self.order[start:end], done, stop - start,
                                                    int(self.seeds[position]), self.uniforms)
        return self.order[cursor:stop]

    def peek(self, plan: Sequence[int], n: int, limit: int | None = None) -> list[np.ndarray]:
        """The indices that drawing ``n`` images from each label of ``plan`` in turn would take,
        without drawing: pools not drawn from yet get their seeds from a copy of the RNG and are
        settled on copies; the others are settled in place (their order is fixed already).
        ``limit`` caps the images in all (the budget left). Stops early at an empty pool (the
        env would redraw that action, so what follows is unknown)."""
        rng, cursor, copies = None, {}, {}
        left = len(self) if limit is None else int(limit)
        batches = []
        for position in plan:
            position = int(position)
            start = cursor.get(position, int(self.cursor[position]))
            first, end = int(self.pool_starts[position]), int(self.pool_ends[position])
            stop = min(start + n, end, start + left)
            if stop <= start:
                break
            if self.seeds[position] >= 0:
                self.upcoming(position, stop - int(self.cursor[position]))
                batches.append(self.order[start:stop].copy())
            else:
                if position not in copies:
                    rng = rng or copy.deepcopy(self.rng)
                    copies[position] = self._predicted(position, rng)
                pool, seed, done = copies[position]
                if done < stop - first:
                    copies[position][2] = settle(pool, done, stop - first, seed, self.uniforms)
                batches.append(pool[start - first:stop - first])
            cursor[position], left = stop, left - (stop - start)
        return batches

    def _predicted(self, position: int, rng: np.random.Generator) -> list:
        """A copy of a pool not drawn from yet, as its first draw would start it with ``rng``:
        [its images from the pool's start, its seed, how far the copy is settled]."""
        first, cursor, end = (int(a[position]) for a in (self.pool_starts, self.cursor, self.pool_ends))
        pool = self.order[first:end].copy()
        if self.pools == "whole":
            rng.shuffle(pool[cursor - first:])
            return [pool, 0, end - first]
        return [pool, int(rng.integers(INT64_MAX)), cursor - first]

    def undraw(self, position: int, n: int) -> None:
        """Give back the last ``n`` images drawn from ``position`` (their query was never answered)."""
        self.cursor[position] -= n

    def state_dict(self) -> dict[str, np.ndarray]:
        """The pools: image order, per-label cursors, shuffle seeds and how far each order is settled."""
        return {"order": self.order, "cursor": self.cursor, "seeds": self.seeds, "settled": self.settled,
                **self.synthetic_state()}

    def load_state_dict(self, state: Mapping[str, np.ndarray], rng: np.random.Generator) -> None:
        """Restore :meth:`state_dict`; pools that do not fit this query set are refused. A state
        saved before pools were settled lazily (``shuffled`` flags) is read as wholly settled pools."""
        order, cursor = np.asarray(state["order"]), np.asarray(state["cursor"])
        if "seeds" in state:
            seeds, settled = np.asarray(state["seeds"]), np.asarray(state["settled"])
        else:  # a shuffled pool was shuffled whole; an unshuffled one is in its canonical order
            shuffled = np.asarray(state["shuffled"], bool)
            whole = shuffled.shape == self.seeds.shape
            seeds = np.where(shuffled, 0, -1) if whole else shuffled
            settled = np.where(shuffled, self.pool_ends, self.pool_starts) if whole else shuffled
        if order.shape != self.order.shape or cursor.shape != self.cursor.shape \
                or seeds.shape != self.seeds.shape or settled.shape != self.settled.shape \
                or not np.array_equal(np.sort(order), np.arange(len(self))) \
                or not np.array_equal(self.positions[order], self.positions[self._sorted_order]) \
                or (cursor < self.pool_starts).any() or (cursor > self.pool_ends).any() \
                or (settled < self.pool_starts).any() or (settled > self.pool_ends).any():
            raise ValueError("the saved query-set pools do not fit this query set; was the state saved "
                             "from an env with another query set?")
        self.order, self.cursor = order.astype(np.int64), cursor.astype(np.int64)
        self.seeds, self.settled, self.rng = seeds.astype(np.int64), settled.astype(np.int64), rng
        self.load_synthetic_state(state)

    def position(self, coarse: int, slot: int) -> int:
        """Flat position of label ``slot`` of coarse node ``coarse``; -1 when the slot does not exist."""
        return int(self.coarse_offsets[coarse] + slot) if slot < self.coarse_sizes[coarse] else -1

    def label_name(self, position: int) -> str:
        z = int(self.label_ids[position])
        return self.label_names.get(z, str(z))
