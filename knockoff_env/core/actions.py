"""The env's actions: the space for each action mode, from an action to the label it queries
(and the step's draw of its images), the masks of what can still be queried, and
:class:`ImageChoice`, the action that names the step's images itself."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from ..data.query_set import QuerySet

ACTION_MODES = ("hierarchical", "flat")


class Query(NamedTuple):
    """One step's draw: the label queried, whether the action was redrawn, image indices, images,
    and whether the agent chose the images (an :class:`ImageChoice`; ``position`` is then the
    first image's label)."""
    position: int
    resolved: bool
    index: np.ndarray
    images: torch.Tensor
    chosen: bool = False


class ImageChoice(NamedTuple):
    """An action that names the step's images: ``env.step(ImageChoice(indices))`` queries exactly
    the images at ``indices`` (query-set indices, in that order; synthetic ones included, see
    :mod:`knockoff_env.data.picking`) instead of drawing images of a label.

    At most ``queries_per_step`` images and no more than the budget left; each must not have
    been queried this episode. Anything else is a ``ValueError`` and nothing is drawn. The step
    is then a step like any other: one victim call, the detector fed in this order, the
    knockoff's SGD step, rewards, the transfer set, the journal (which records the indices, so
    a resumed run that chooses the same images replays them exactly)."""
    indices: np.ndarray


def choose(choice: ImageChoice, query_set: QuerySet, per_step: int, left: int) -> Query:
    """The step's draw for an :class:`ImageChoice`: its images taken from what is left."""
    count = len(np.atleast_1d(np.asarray(choice.indices)))
    if count > min(per_step, left):
        raise ValueError(f"{count} images chosen for one step, but a step queries at most queries_per_step="
                         f"{per_step} images and {left} queries of the budget are left; choose at most "
                         f"{min(per_step, left)}")
    index = query_set.take(choice.indices)
    return Query(query_set.position_of(int(index[0])), False, index, None, True)


def give_back(query_set: QuerySet, query: Query, n: int) -> None:
    """Return the last ``n`` images of ``query`` to what is left (their query was never answered)."""
    if n <= 0:
        return
    if query.chosen:
        query_set.untake(query.index[len(query.index) - n:])
    else:
        query_set.undraw(query.position, n)


def action_space(query_set: QuerySet, action_mode: str) -> spaces.Space:
    """``MultiDiscrete([coarse nodes, largest node's labels])`` or ``Discrete(labels)``."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode={action_mode!r}; choose one of {ACTION_MODES}")
    if action_mode == "hierarchical":
        return spaces.MultiDiscrete([query_set.num_coarse, int(query_set.coarse_sizes.max())])
    return spaces.Discrete(query_set.num_labels)


def resolve_action(action, space: spaces.Space, query_set: QuerySet, rng: np.random.Generator) -> tuple[int, bool]:
    """The flat label position ``action`` names, and whether it had to be redrawn: an exhausted or
    missing label becomes a uniformly drawn label with images left in the same coarse node (else
    anywhere). An action outside ``space`` is a ValueError."""
    a = np.asarray(action)
    if not _inside(a, space):
        raise ValueError(f"action {action!r} is outside the action space {space}; "
                         "give integer coarse/label indices within its bounds")
    qs = query_set
    if isinstance(space, spaces.Discrete):
        position = int(a.item())
        coarse = int(qs.coarse_of_label[position])
    else:
        coarse, slot = a.ravel().tolist()
        position = qs.position(coarse, slot)
    if position >= 0 and qs.cursor[position] < qs.pool_ends[position]:  # images left
        return position, False
    remaining = qs.remaining()
    start, stop = qs.coarse_offsets[coarse], qs.coarse_offsets[coarse] + qs.coarse_sizes[coarse]
    candidates = start + np.flatnonzero(remaining[start:stop])
    if candidates.size == 0:
        candidates = np.flatnonzero(remaining)
    return int(rng.choice(candidates)), True


def _inside(a: np.ndarray, space: spaces.Space) -> bool:
    """``space.contains`` for integer actions, in plain Python (it runs every step; numpy's reductions
    on a 2-element array cost more than the rest of the step's bookkeeping)."""
    if a.dtype.kind not in "iu":
        return False
    if isinstance(space, spaces.Discrete):
        return a.size == 1 and space.start <= int(a.item()) < space.start + space.n
    values = a.ravel().tolist()
    return len(values) == space.nvec.size and all(
        0 <= v - s < n for v, s, n in zip(values, space.start.ravel().tolist(), space.nvec.ravel().tolist()))


def action_masks(query_set: QuerySet, action_mode: str) -> np.ndarray:
    """Valid actions for MaskablePPO: per label (flat), or per coarse node then per slot."""
    label_ok = query_set.remaining() > 0
    if action_mode == "flat":
        return label_ok
    qs = query_set
    coarse_ok = np.add.reduceat(label_ok, qs.coarse_offsets) > 0
    slots = np.zeros(int(qs.coarse_sizes.max()), bool)
    slot_of_label = np.arange(qs.num_labels) - qs.coarse_offsets[qs.coarse_of_label]
    slots[slot_of_label[label_ok]] = True
    return np.concatenate([coarse_ok, slots])
