"""The paper's adaptive strategy: a (hierarchical) gradient bandit over the query set's labels.

Preferences H, policy π = softmax(H) over the actions still available. After reward r_t
with baseline r̄_t (the mean of the rewards *before* t; r̄_1 = r_1, so the first step does
not move H):

    H(a_t) += α (r_t − r̄_t)(1 − π(a_t)),    H(a) −= α (r_t − r̄_t) π(a)  for a ≠ a_t.

Hierarchical (default): one softmax at the root over coarse nodes and one at every coarse
node over its labels; a step samples root → coarse → label and updates both softmaxes on
that path with the same reward. ``hierarchical=False`` is adaptive-flat (supplement D.3):
one softmax over all labels. Exhausted labels, and coarse nodes with nothing left, get
probability 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Agent, action_for


def masked_softmax(preferences: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """softmax(H) restricted to ``mask`` (max subtracted, so no overflow)."""
    if not mask.any():
        raise ValueError("no action is available: every label in this node is exhausted")
    h = np.where(mask, preferences, -np.inf)
    e = np.exp(h - h.max())
    return e / e.sum()


def gradient_step(preferences: np.ndarray, probs: np.ndarray, chosen: int, advantage: float, alpha: float) -> None:
    """In place: H −= α·adv·π for every action, then H(chosen) += α·adv (together: the rule above)."""
    preferences -= alpha * advantage * probs
    preferences[chosen] += alpha * advantage


class GradientBandit(Agent):
    """Adaptive (hierarchical) or adaptive-flat gradient bandit.

    Args:
        env: the KnockoffEnv (or a wrapper of it); its query set gives the hierarchy.
        alpha: step size α of the preference update. Default 0.3, chosen on the digits world
            (rewards lie in [0, 1]; see the README table).
        hierarchical: True for the paper's adaptive, False for adaptive-flat.
        baseline_step: None for the sample mean of past rewards (default); a number β in
            (0, 1] for an exponential moving average r̄ ← r̄ + β (r − r̄), which tracks
            the non-stationary rewards more closely.
        seed: seeds the sampling of actions.
    """

    def __init__(self, env, alpha: float = 0.3, hierarchical: bool = True,
                 baseline_step: float | None = None, seed: int | None = None):
        super().__init__(env, seed)
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha={alpha!r} must be a positive step size")
        if baseline_step is not None and not 0 < baseline_step <= 1:
            raise ValueError(f"baseline_step={baseline_step!r} must be in (0, 1] or None for the sample mean")
        self.alpha, self.hierarchical, self.baseline_step = float(alpha), hierarchical, baseline_step
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        qs = self.query_set
        self.root_preferences = np.zeros(qs.num_coarse)
        self.label_preferences = np.zeros(qs.num_labels)  # node c's labels: one contiguous segment
        self.baseline, self.steps = 0.0, 0
        self._last: dict[str, Any] | None = None

    # --- acting ----------------------------------------------------------------------
    def _segment(self, coarse: int) -> slice:
        start = int(self.query_set.coarse_offsets[coarse])
        return slice(start, start + int(self.query_set.coarse_sizes[coarse]))

    def _root(self, label_ok: np.ndarray) -> np.ndarray:
        """π over coarse nodes; nodes with no label left get 0."""
        coarse_ok = np.add.reduceat(label_ok, self.query_set.coarse_offsets) > 0
        return masked_softmax(self.root_preferences, coarse_ok)

    def _node(self, coarse: int, label_ok: np.ndarray) -> np.ndarray:
        """π over the labels of one coarse node."""
        segment = self._segment(coarse)
        return masked_softmax(self.label_preferences[segment], label_ok[segment])

    def act(self, obs, info):
        label_ok = np.asarray(info["action_mask"], dtype=bool)
        if not self.hierarchical:
            probs = masked_softmax(self.label_preferences, label_ok)
            position = int(self.rng.choice(len(probs), p=probs))
            self._last = {"position": position, "probs": probs}
            return action_for(self.env, position)
        root = self._root(label_ok)
        coarse = int(self.rng.choice(len(root), p=root))
        node = self._node(coarse, label_ok)
        slot = int(self.rng.choice(len(node), p=node))
        self._last = {"coarse": coarse, "slot": slot, "root": root, "node": node}
        return action_for(self.env, self._segment(coarse).start + slot)

    # --- learning --------------------------------------------------------------------
    def update(self, action, reward: float, info) -> None:
        if self._last is None:
            raise RuntimeError("update() needs the act() that chose the action")
        if not np.isfinite(reward):
            raise ValueError(f"reward {reward!r} is not finite")
        self.steps += 1
        baseline = reward if self.steps == 1 else self.baseline
        advantage = reward - baseline
        last = self._last
        if self.hierarchical:
            gradient_step(self.root_preferences, last["root"], last["coarse"], advantage, self.alpha)
            gradient_step(self.label_preferences[self._segment(last["coarse"])], last["node"], last["slot"],
                          advantage, self.alpha)
        else:
            gradient_step(self.label_preferences, last["probs"], last["position"], advantage, self.alpha)
        step = 1.0 / self.steps if self.baseline_step is None else self.baseline_step
        self.baseline = reward if self.steps == 1 else self.baseline + step * (reward - self.baseline)
        self._last = None

    # --- inspection --------------------------------------------------------------------
    def label_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        """π over labels (flat order): for the hierarchy, π(coarse) · π(label | coarse)."""
        label_ok = self.query_set.remaining() > 0 if label_ok is None else np.asarray(label_ok, bool)
        if not label_ok.any():
            return np.zeros(self.query_set.num_labels)
        if not self.hierarchical:
            return masked_softmax(self.label_preferences, label_ok)
        root = self._root(label_ok)
        return np.concatenate([root[c] * self._node(c, label_ok) if root[c] > 0
                               else np.zeros(self.query_set.coarse_sizes[c]) for c in range(len(root))])

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "root_preferences": self.root_preferences.copy(),
                "label_preferences": self.label_preferences.copy(),
                "baseline": np.float64(self.baseline), "steps": np.int64(self.steps)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.root_preferences = np.array(state["root_preferences"], np.float64)
        self.label_preferences = np.array(state["label_preferences"], np.float64)
        self.baseline, self.steps = float(state["baseline"]), int(state["steps"])
