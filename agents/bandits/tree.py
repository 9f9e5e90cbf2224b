"""The hierarchy every label bandit plays on: one bandit per node, a path root → coarse → label.

Hierarchical: the root's bandit chooses among the coarse nodes that still have images, then
that node's bandit chooses among its labels that still have images; the step's reward
updates both bandits on that path. Flat: one bandit over every label. Exhausted labels,
and coarse nodes with nothing left, are never chosen and get probability 0.

A bandit keeps per-arm statistics as named arrays, one set for the root (an entry per
coarse node) and one for all labels (a node's labels are one contiguous segment of it).
A node is a dict of views into those arrays, so updating a node updates the agent.
Subclasses name the arrays (``STATS``, zeros at reset), say how a node chooses
(:meth:`TreeBandit._pick`, by default a draw from :meth:`TreeBandit._policy`) and how it
learns (:meth:`TreeBandit._learn`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base import Agent, action_for

Node = dict[str, np.ndarray]  # statistic name -> the node's arms' values (views)


@dataclass
class Choice:
    """One node's part of a step: the node, the arm it chose, what was available, its policy."""

    node: Node
    arm: int
    mask: np.ndarray
    probs: np.ndarray | None  # the distribution the arm was drawn from (None: chosen another way)


def check_available(mask: np.ndarray) -> None:
    if not mask.any():
        raise ValueError("no action is available: every label in this node is exhausted")


def argmax_random_tie(values: np.ndarray, rng: np.random.Generator) -> int:
    """The index of the largest value; a tie is broken uniformly at random (one draw, only on a tie)."""
    best = np.flatnonzero(values == values.max())
    return int(best[0]) if len(best) == 1 else int(rng.choice(best))


def budget_steps(env) -> int:
    """T, the steps the env's budget allows (the horizon the bandits' defaults are tuned for)."""
    core = env.unwrapped
    return max(1, -(-int(core.budget) // int(core.queries_per_step)))


class TreeBandit(Agent):
    """Base of the label bandits: the hierarchy, acting, and a state that restores them exactly.

    Args:
        env: the KnockoffEnv (or a wrapper of it); its query set gives the hierarchy.
        hierarchical: one bandit per node (True) or one over all labels (False).
        seed: seeds the agent's random choices.
    """

    STATS: tuple[str, ...] = ()  # names of the per-arm arrays

    def __init__(self, env, hierarchical: bool = True, seed: int | None = None):
        super().__init__(env, seed)
        self.hierarchical = bool(hierarchical)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.root = self._fresh(self.query_set.num_coarse)
        self.labels = self._fresh(self.query_set.num_labels)
        self.steps = 0
        self._path: list[Choice] | None = None

    # --- what subclasses define ---------------------------------------------------------
    def _fresh(self, arms: int) -> Node:
        """Statistics of ``arms`` arms nobody has played: zeros."""
        return {name: np.zeros(arms) for name in self.STATS}

    def _policy(self, node: Node, mask: np.ndarray) -> np.ndarray:
        """The node's probability of choosing each arm (0 where ``mask`` is False)."""
        raise NotImplementedError

    def _pick(self, node: Node, mask: np.ndarray) -> tuple[int, np.ndarray | None]:
        """The arm the node plays now, and the distribution it was drawn from."""
        probs = self._policy(node, mask)
        return int(self.rng.choice(len(probs), p=probs)), probs

    def _learn(self, choice: Choice, reward: float) -> None:
        """Update one node on the step's path with the step's reward."""
        raise NotImplementedError

    # --- the hierarchy ------------------------------------------------------------------
    def _segment(self, coarse: int) -> slice:
        start = int(self.query_set.coarse_offsets[coarse])
        return slice(start, start + int(self.query_set.coarse_sizes[coarse]))

    def _coarse_ok(self, label_ok: np.ndarray) -> np.ndarray:
        return np.add.reduceat(label_ok, self.query_set.coarse_offsets) > 0

    @staticmethod
    def _view(stats: Node, segment: slice) -> Node:
        return {name: values[segment] for name, values in stats.items()}

    def act(self, obs, info):
        label_ok = np.asarray(info["action_mask"], dtype=bool)
        if not self.hierarchical:
            check_available(label_ok)
            arm, probs = self._pick(self.labels, label_ok)
            self._path = [Choice(self.labels, arm, label_ok, probs)]
            return action_for(self.env, arm)
        coarse_ok = self._coarse_ok(label_ok)
        check_available(coarse_ok)
        coarse, root_probs = self._pick(self.root, coarse_ok)
        segment = self._segment(coarse)
        node, node_ok = self._view(self.labels, segment), label_ok[segment]
        slot, node_probs = self._pick(node, node_ok)
        self._path = [Choice(self.root, coarse, coarse_ok, root_probs), Choice(node, slot, node_ok, node_probs)]
        return action_for(self.env, segment.start + slot)

    def update(self, action, reward: float, info) -> None:
        if self._path is None:
            raise RuntimeError("update() needs the act() that chose the action")
        if not np.isfinite(reward):
            raise ValueError(f"reward {reward!r} is not finite")
        self.steps += 1
        for choice in self._path:
            self._learn(choice, float(reward))
        self._path = None

    # --- inspection ---------------------------------------------------------------------
    def label_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        """The policy over labels (flat order): for the hierarchy, π(coarse) · π(label | coarse)."""
        label_ok = self.query_set.remaining() > 0 if label_ok is None else np.asarray(label_ok, bool)
        if not label_ok.any():
            return np.zeros(self.query_set.num_labels)
        if not self.hierarchical:
            return self._policy(self.labels, label_ok)
        root = self._policy(self.root, self._coarse_ok(label_ok))
        parts = []
        for c in range(len(root)):
            segment = self._segment(c)
            parts.append(root[c] * self._policy(self._view(self.labels, segment), label_ok[segment]) if root[c] > 0
                         else np.zeros(segment.stop - segment.start))
        return np.concatenate(parts)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {**super().state_dict(), "steps": np.int64(self.steps)}
        state.update({f"root_{name}": values.copy() for name, values in self.root.items()})
        state.update({f"label_{name}": values.copy() for name, values in self.labels.items()})
        return state

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.steps = int(state["steps"])
        self.root = {name: np.array(state[f"root_{name}"], np.float64) for name in self.root}
        self.labels = {name: np.array(state[f"label_{name}"], np.float64) for name in self.labels}
        self._path = None
