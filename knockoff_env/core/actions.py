"""The env's actions: the space for each action mode, from an action to the label it queries
(and the step's draw of its images), and the masks of what can still be queried."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from ..data.query_set import QuerySet

ACTION_MODES = ("hierarchical", "flat")


class Query(NamedTuple):
    """One step's draw: the label queried, whether the action was redrawn, image indices, images."""
    position: int
    resolved: bool
    index: np.ndarray
    images: torch.Tensor


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
    shape = space.shape
    if a.dtype.kind not in "iu" or a.size != max(1, int(np.prod(shape))) \
            or not space.contains(a.reshape(shape) if shape else int(a.item())):
        raise ValueError(f"action {action!r} is outside the action space {space}; "
                         "give integer coarse/label indices within its bounds")
    qs = query_set
    remaining = qs.remaining()
    if isinstance(space, spaces.Discrete):
        position = int(a.item())
        coarse = int(qs.coarse_of_label[position])
    else:
        coarse, slot = (int(v) for v in a.reshape(-1))
        position = qs.position(coarse, slot)
    if position >= 0 and remaining[position] > 0:
        return position, False
    start, stop = qs.coarse_offsets[coarse], qs.coarse_offsets[coarse] + qs.coarse_sizes[coarse]
    candidates = start + np.flatnonzero(remaining[start:stop])
    if candidates.size == 0:
        candidates = np.flatnonzero(remaining)
    return int(rng.choice(candidates)), True


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
