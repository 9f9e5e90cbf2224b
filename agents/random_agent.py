"""The paper's random strategy: uniform over the query set's images, drawn without replacement.

Equivalently, a label is chosen with probability proportional to the images it has left.
"""
from __future__ import annotations

import copy

import numpy as np

from .base import Agent, action_for


class RandomAgent(Agent):
    """Picks label z with probability (images of z left) / (images left).

    It reads neither the answers nor the rewards, so the runner trains no online knockoff for it
    and queries its steps in batches (see :mod:`agents.batching`)."""

    needs_online_knockoff = False  # the paper's random strategy trains the knockoff only offline
    answer_independent = True  # its actions never depend on the victim's answers

    def act(self, obs, info):
        return action_for(self.env, pick(self.rng, self.label_probabilities()))

    def label_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        remaining = self.query_set.remaining().astype(np.float64)
        if label_ok is not None:
            remaining = remaining * label_ok
        total = remaining.sum()
        return remaining / total if total > 0 else remaining

    def plan(self, steps: int) -> list[int]:
        """The labels (flat positions) :meth:`act` will choose in the next ``steps`` steps, as
        long as the env draws as expected: acting is replayed on copies of the RNG and pools.
        The env's look-ahead decodes their images ahead (see :mod:`knockoff_env.lookahead`)."""
        core = self.env.unwrapped
        rng = copy.deepcopy(self.rng)
        remaining = self.query_set.remaining().copy()
        left = core.budget - core.spent - core.pending  # images drawn for a batch not answered yet count
        plan = []
        while len(plan) < steps and left > 0 and remaining.any():
            p = remaining.astype(np.float64)
            position = pick(rng, p / p.sum())
            taken = min(core.queries_per_step, left, remaining[position])
            remaining[position] -= taken
            left -= taken
            plan.append(position)
        return plan


def pick(rng: np.random.Generator, p: np.ndarray) -> int:
    """A label drawn with probabilities ``p``: ``rng.choice(len(p), p=p)``'s draw from the same one
    uniform number, without its checks of ``p`` (a few microseconds a step)."""
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))
