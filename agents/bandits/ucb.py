"""Upper-confidence-bound bandits at every node: UCB1 and discounted UCB.

A node plays the available arm with the largest index

    S_i / N_i + 2B √(ξ log n / N_i),   n = Σ_j N_j over the node's arms,

and an arm it never played first (ties broken at random). UCB1 (Auer, Cesa-Bianchi &
Fischer 2002) counts plays and sums rewards; ξ = 1/2 and B = 1 give its √(2 ln n / N_i).
Discounted UCB (D-UCB, Garivier & Moulines 2011) forgets: each time the node plays, every
arm's N and S are multiplied by γ before the played arm's are increased, so N_i is the
discounted number of recent plays and S_i / N_i a discounted mean. Forgetting suits this
env: its rewards drift as the knockoff learns (the loss falls) and as the running
normaliser of ``reward="all"`` widens.

Time is the node's own: a coarse node's bandit counts (and discounts at) the steps that
reach it, so each node is exactly the published algorithm run on its own plays.

The policy a node reports (:meth:`UCB.label_probabilities`, for the TensorBoard plots and the
look-ahead) is the share of its (discounted) plays each arm got, N_i / Σ N: for D-UCB the
share of recent picks, for UCB1 of all picks so far. UCB's own choice is deterministic, so a
one-hot of the next choice would be exact but would show nothing between two log points.
"""
from __future__ import annotations

import numpy as np

from .tree import Choice, Node, TreeBandit, argmax_random_tie, budget_steps


class UCB(TreeBandit):
    """UCB1 at every node of the hierarchy (or over all labels), or discounted UCB with ``discount`` < 1.

    Args:
        env: the KnockoffEnv (or a wrapper of it); its query set gives the hierarchy.
        hierarchical: one bandit per node (True) or one over all labels (False).
        discount: γ in (0, 1]; 1 is UCB1 (default), less forgets (see :class:`DiscountedUCB`).
        xi: ξ > 0, the weight of the confidence bonus; 1/2 is UCB1's.
        reward_bound: B, the largest reward; 1 for ``reward="all"``, whose rewards lie in [0, 1].
        seed: seeds the tie-breaks.
    """

    STATS = ("counts", "sums")

    def __init__(self, env, hierarchical: bool = True, discount: float = 1.0, xi: float = 0.5,
                 reward_bound: float = 1.0, seed: int | None = None):
        super().__init__(env, hierarchical, seed)
        if not 0 < discount <= 1:
            raise ValueError(f"discount={discount!r} must be in (0, 1] (1: UCB1, no forgetting)")
        for name, value in (("xi", xi), ("reward_bound", reward_bound)):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive number")
        self.discount, self.xi, self.reward_bound = float(discount), float(xi), float(reward_bound)
        self.reset()

    def indices(self, node: Node, mask: np.ndarray) -> np.ndarray:
        """The UCB index of every arm of ``node``: +inf never played, −inf unavailable."""
        counts, sums = node["counts"], node["sums"]
        played = counts > 0
        n = counts.sum()
        safe = np.where(played, counts, 1.0)
        bonus = 2 * self.reward_bound * np.sqrt(self.xi * np.log(max(n, 1.0)) / safe)
        index = np.where(played, sums / safe + bonus, np.inf)
        return np.where(mask, index, -np.inf)

    def _pick(self, node: Node, mask: np.ndarray) -> tuple[int, None]:
        return argmax_random_tie(self.indices(node, mask), self.rng), None

    def _policy(self, node: Node, mask: np.ndarray) -> np.ndarray:
        counts = np.where(mask, node["counts"], 0.0)
        total = counts.sum()
        return counts / total if total > 0 else mask / mask.sum()

    def _learn(self, choice: Choice, reward: float) -> None:
        counts, sums = choice.node["counts"], choice.node["sums"]
        if self.discount < 1:
            counts *= self.discount
            sums *= self.discount
        counts[choice.arm] += 1
        sums[choice.arm] += reward


class DiscountedUCB(UCB):
    """D-UCB (Garivier & Moulines 2011): UCB whose statistics forget at rate γ per play of the node.

    Args:
        discount: γ; None (default) for 1 − 1/(4√T), T the steps the budget allows: the
            paper's tuning 1 − (4B)⁻¹ √(Υ_T / T) for B = 1 and one change point (Υ_T = 1).
            It remembers about 1/(1 − γ) = 4√T plays (63 for T = 250, 490 for T = 15,000).
        xi: ξ = 0.6; their bounds hold for ξ > 1/2, so just above UCB1's weight.
        Other arguments as :class:`UCB`.
    """

    def __init__(self, env, hierarchical: bool = True, discount: float | None = None, xi: float = 0.6,
                 reward_bound: float = 1.0, seed: int | None = None):
        if discount is None:
            discount = 1 - 1 / (4 * np.sqrt(budget_steps(env)))
        super().__init__(env, hierarchical, discount, xi, reward_bound, seed)
