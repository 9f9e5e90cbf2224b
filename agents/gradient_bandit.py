"""The paper's adaptive strategy: a (hierarchical) gradient bandit over the query set's labels.

Preferences H, policy π = softmax(H) over the actions still available. After reward r_t
with baseline r̄_t (the mean of the rewards *before* t; r̄_1 = r_1, so the first step does
not move H):

    H(a_t) += α (r_t − r̄_t)(1 − π(a_t)),    H(a) −= α (r_t − r̄_t) π(a)  for a ≠ a_t.

Hierarchical (default): one softmax at the root over coarse nodes and one at every coarse
node over its labels; a step samples root → coarse → label and updates both softmaxes on
that path with the same reward. ``hierarchical=False`` is adaptive-flat (supplement D.3):
one softmax over all labels. Exhausted labels, and coarse nodes with nothing left, get
probability 0. The hierarchy itself is :class:`agents.bandits.tree.TreeBandit`'s.
"""
from __future__ import annotations

import numpy as np

from .bandits.tree import Choice, Node, TreeBandit, check_available


def masked_softmax(preferences: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """softmax(H) restricted to ``mask`` (max subtracted, so no overflow)."""
    check_available(mask)
    h = np.where(mask, preferences, -np.inf)
    e = np.exp(h - h.max())
    return e / e.sum()


def gradient_step(preferences: np.ndarray, probs: np.ndarray, chosen: int, advantage: float, alpha: float) -> None:
    """In place: H −= α·adv·π for every action, then H(chosen) += α·adv (together: the rule above)."""
    preferences -= alpha * advantage * probs
    preferences[chosen] += alpha * advantage


class GradientBandit(TreeBandit):
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

    STATS = ("preferences",)

    def __init__(self, env, alpha: float = 0.3, hierarchical: bool = True,
                 baseline_step: float | None = None, seed: int | None = None):
        super().__init__(env, hierarchical, seed)
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha={alpha!r} must be a positive step size")
        if baseline_step is not None and not 0 < baseline_step <= 1:
            raise ValueError(f"baseline_step={baseline_step!r} must be in (0, 1] or None for the sample mean")
        self.alpha, self.baseline_step = float(alpha), baseline_step
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.baseline = 0.0

    @property
    def root_preferences(self) -> np.ndarray:
        return self.root["preferences"]

    @property
    def label_preferences(self) -> np.ndarray:
        return self.labels["preferences"]  # node c's labels: one contiguous segment

    def _policy(self, node: Node, mask: np.ndarray) -> np.ndarray:
        return masked_softmax(node["preferences"], mask)

    def _learn(self, choice: Choice, reward: float) -> None:
        baseline = reward if self.steps == 1 else self.baseline
        gradient_step(choice.node["preferences"], choice.probs, choice.arm, reward - baseline, self.alpha)

    def update(self, action, reward: float, info) -> None:
        super().update(action, reward, info)  # every node on the path, with the baseline before this step
        step = 1.0 / self.steps if self.baseline_step is None else self.baseline_step
        self.baseline = reward if self.steps == 1 else self.baseline + step * (reward - self.baseline)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "baseline": np.float64(self.baseline)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.baseline = float(state["baseline"])
