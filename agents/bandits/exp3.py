"""EXP3.S (Auer, Cesa-Bianchi, Freund & Schapire 2002) at every node: exponential weights
for rewards chosen by an adversary, with a share of weight that lets the best arm change.

A node with K available arms and weights w plays arm i with probability

    p_i = (1 − γ) w_i / Σ_j w_j + γ / K,

and after reward r on arm a it estimates every arm's reward without bias, x̂_a = r / p_a and
x̂_i = 0 otherwise, and updates

    w_i ← w_i · exp(γ x̂_i / K) + (e α / K) Σ_j w_j.

α = 0 is EXP3. The shared term α keeps every weight within reach of the largest, so the
node can move to an arm that became good: the non-stationary rewards of this env (the loss
falls as the knockoff learns) are the case EXP3.S was made for. Rewards are assumed in
[0, 1] (``reward="all"``). Weights are kept as logarithms, shifted so that the largest is 0,
so nothing overflows; exhausted arms leave K and the sums.
"""
from __future__ import annotations

import numpy as np

from .tree import Choice, Node, TreeBandit, budget_steps


class Exp3S(TreeBandit):
    """EXP3.S at every node of the hierarchy (or over all labels).

    Args:
        env: the KnockoffEnv (or a wrapper of it); its query set gives the hierarchy.
        hierarchical: one bandit per node (True) or one over all labels (False).
        gamma: γ in (0, 1], the uniform exploration (and the learning rate γ/K). Default 0.3:
            of 0.1, 0.3, 0.6 and 1 on the digits world (budget 500, 5 seeds;
            ``benchmarks/bandit_defaults.py``) it put the most queries on the victim's node and
            gave the best retrained knockoff, though within a standard deviation. Auer et al.'s
            worst-case tuning √(K (S ln(KT) + e) / ((e − 1) T)) with one switch (S = 1) is
            0.90 for K = 30 arms and T = 250 steps (1,000 queries), and 0.86 for ILSVRC's
            1,000 labels at T = 15,000 (60,000 queries): nearly uniform play.
        share: α ≥ 0; None (default) for 1/T, T the steps the budget allows (Auer et al.'s
            choice); 0 for plain EXP3.
        seed: seeds the draws.
    """

    STATS = ("log_weights",)

    def __init__(self, env, hierarchical: bool = True, gamma: float = 0.3, share: float | None = None,
                 seed: int | None = None):
        super().__init__(env, hierarchical, seed)
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma={gamma!r} must be in (0, 1]")
        if share is None:
            share = 1 / budget_steps(env)
        if not np.isfinite(share) or share < 0:
            raise ValueError(f"share={share!r} must be a number ≥ 0 (0: plain EXP3)")
        self.gamma, self.share = float(gamma), float(share)
        self.reset()

    def _policy(self, node: Node, mask: np.ndarray) -> np.ndarray:
        log_w = np.where(mask, node["log_weights"], -np.inf)
        w = np.exp(log_w - log_w.max())
        return np.where(mask, (1 - self.gamma) * w / w.sum() + self.gamma / mask.sum(), 0.0)

    def _learn(self, choice: Choice, reward: float) -> None:
        log_w, mask, k = choice.node["log_weights"], choice.mask, choice.mask.sum()
        log_total = np.logaddexp.reduce(log_w[mask])
        log_w[choice.arm] += self.gamma * (reward / choice.probs[choice.arm]) / k
        if self.share > 0:
            log_w[mask] = np.logaddexp(log_w[mask], np.log(np.e * self.share / k) + log_total)
        log_w[mask] -= log_w[mask].max()
