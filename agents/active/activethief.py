"""ActiveThief (Pal et al., AAAI 2020) as an agent: it chooses the images, not only their labels.

Rounds, as ActiveThief runs them:

1. a **seed set** of ``seed_size`` images drawn uniformly from the query set (default 10 % of
   the budget);
2. then, every ``round_size`` queries (default 10 % of the budget), the images not queried yet
   (or a uniform random subsample of ``pool_sample`` of them, default 10,000, ActiveThief's K)
   are scored with the env's current online knockoff and the ``round_size`` best by the rule
   (:mod:`.selection`: entropy, margin, k-center, DFAL, DFAL + k-center) are queued.

The queue is played ``queries_per_step`` images a step through
:class:`~knockoff_env.core.actions.ImageChoice`, so every guarantee of the env holds (no image
twice, exact budget, journal, detectors in query order) and a resumed run re-scores the pool
with the same knockoff and chooses, and replays, the same images.

Differences from ActiveThief's code, by design of the env: its substitute is retrained from
scratch on the whole transfer set each round; here the scorer is the env's online knockoff,
which took one SGD step per step (the offline phase still trains a fresh knockoff on the
transfer set at the end). k-center's first centres are the knockoff's outputs on every image
queried so far, as theirs; DFAL + k-center keeps a DFAL shortlist as large as the budget (theirs).
"""
from __future__ import annotations

import numpy as np

from knockoff_env.checks import is_integer

from .queue import QueueAgent
from .selection import POOL_SAMPLE, RULES, FetchedPool, pool_subsample, select

FRACTION = 0.1  # default seed set and round size: 10 % of the budget each (nine scored rounds)


class ActiveThief(QueueAgent):
    """Random seed set, then rounds of the ``rule``'s best images of the pool by the online knockoff."""

    needs_online_knockoff = True  # it scores the pool with the online knockoff

    def __init__(self, env, rule: str = "entropy", seed: int | None = None, seed_size: int | None = None,
                 round_size: int | None = None, pool_sample: int | None = POOL_SAMPLE):
        super().__init__(env, seed)
        if rule not in RULES:
            raise ValueError(f"unknown ActiveThief rule {rule!r}; choose one of {RULES}")
        core = env.unwrapped
        default = max(1, int(FRACTION * core.budget))
        self.rule = rule
        self.seed_size = _count("seed_size", default if seed_size is None else seed_size, allow_zero=True)
        self.round_size = _count("round_size", default if round_size is None else round_size)
        if pool_sample is not None:
            _count("pool_sample", pool_sample)
        self.pool_sample = pool_sample

    def next_round(self, left: int) -> np.ndarray:
        """The images of the next round, in the order they will be queried."""
        core = self.env.unwrapped
        pool = core.query_set.unqueried()
        if core.spent < self.seed_size:  # the random seed set
            k = min(self.seed_size - core.spent, left, len(pool))
            return self.rng.choice(pool, k, replace=False)
        candidates = pool[pool_subsample(len(pool), self.pool_sample, self.rng)]
        k = min(self.round_size, left, len(candidates))
        fetch = core.query_set.fetch
        queried = FetchedPool(fetch, core.transfer_set.view()[0].copy())
        picks = select(self.rule, core.knockoff.model, FetchedPool(fetch, candidates), k, queried=queried,
                       keep=core.budget)
        self.rounds += 1
        return candidates[picks]


def _count(name: str, value, allow_zero: bool = False) -> int:
    if not is_integer(value) or value < (0 if allow_zero else 1):
        raise ValueError(f"ActiveThief {name}={value!r} must be a {'non-negative' if allow_zero else 'positive'} "
                         "number of images")
    return int(value)
