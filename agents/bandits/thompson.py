"""Thompson sampling with Gaussian rewards at every node.

Each arm's mean reward has the prior N(m, σ²) and each reward is Gaussian with variance σ²,
so after N_i rewards summing to S_i the posterior is

    N((S_i + m) / (N_i + 1),  σ² / (N_i + 1)).

A node draws one mean from every available arm's posterior and plays the largest. With
m = 0 and σ = 1 this is Agrawal & Goyal's (2013) Gaussian Thompson sampling. Here m is the
mean of all rewards so far (empirical Bayes: an arm never played is as good as the average,
so it is tried often enough) and σ, unless given, their standard deviation. Both adapt to
the reward's scale, which matters: ``reward="all"`` lies in [0, 1] but its steps differ by
a few hundredths, and single components (the loss) are not bounded at all. The pooled
standard deviation includes the spread between arms, so it over-states the noise and errs
towards exploring. Before two rewards are seen σ = 1/2, the largest standard deviation a
reward in [0, 1] can have.

The policy a node reports is the probability that each arm's draw is the largest, estimated
from :data:`POLICY_DRAWS` joint draws of a generator seeded by the step count: it leaves the
agent's own random stream (and so the run) untouched, and the same state reports the same policy.
"""
from __future__ import annotations

import numpy as np

from .tree import Choice, Node, TreeBandit, argmax_random_tie

POLICY_DRAWS = 256  # standard error of a reported probability ≤ 1/(2√256) = 0.03
PRIOR_SIGMA = 0.5  # σ until two rewards are seen


class GaussianThompson(TreeBandit):
    """Gaussian Thompson sampling at every node of the hierarchy (or over all labels).

    Args:
        env: the KnockoffEnv (or a wrapper of it); its query set gives the hierarchy.
        hierarchical: one bandit per node (True) or one over all labels (False).
        sigma: σ, the rewards' standard deviation; None (default) estimates it from the
            rewards seen (all arms pooled).
        seed: seeds the posterior draws.
    """

    STATS = ("counts", "sums")

    def __init__(self, env, hierarchical: bool = True, sigma: float | None = None, seed: int | None = None):
        super().__init__(env, hierarchical, seed)
        if sigma is not None and (not np.isfinite(sigma) or sigma <= 0):
            raise ValueError(f"sigma={sigma!r} must be a positive number, or None to estimate it")
        self.sigma = None if sigma is None else float(sigma)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.reward_sum = self.reward_squares = 0.0  # over all steps: the prior mean m and σ

    def noise(self) -> float:
        """σ: the given one, or the standard deviation of the rewards seen so far."""
        if self.sigma is not None:
            return self.sigma
        if self.steps < 2:
            return PRIOR_SIGMA
        mean = self.reward_sum / self.steps
        return float(np.sqrt(max(self.reward_squares / self.steps - mean ** 2, 0.0) * self.steps / (self.steps - 1)))

    def posterior(self, node: Node) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of every arm's posterior."""
        prior_mean = self.reward_sum / self.steps if self.steps else 0.0
        pulls = node["counts"] + 1
        return (node["sums"] + prior_mean) / pulls, self.noise() / np.sqrt(pulls)

    def _pick(self, node: Node, mask: np.ndarray) -> tuple[int, None]:
        mean, std = self.posterior(node)
        draws = self.rng.normal(mean, std)
        return argmax_random_tie(np.where(mask, draws, -np.inf), self.rng), None

    def _policy(self, node: Node, mask: np.ndarray) -> np.ndarray:
        mean, std = self.posterior(node)
        rng = np.random.default_rng(self.steps)
        noise = rng.standard_normal((POLICY_DRAWS, len(mean)), dtype=np.float32)
        draws = np.where(mask, mean + std * noise, -np.inf)
        return np.bincount(draws.argmax(1), minlength=len(mean)) / POLICY_DRAWS

    def _learn(self, choice: Choice, reward: float) -> None:
        choice.node["counts"][choice.arm] += 1
        choice.node["sums"][choice.arm] += reward

    def update(self, action, reward: float, info) -> None:
        super().update(action, reward, info)
        self.reward_sum += reward
        self.reward_squares += reward * reward

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "reward_sum": np.float64(self.reward_sum),
                "reward_squares": np.float64(self.reward_squares)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.reward_sum, self.reward_squares = float(state["reward_sum"]), float(state["reward_squares"])
