"""Defenders that play the duel (:class:`knockoff_env.duel.DuelEnv`): fixed, detector-triggered, learning.

A defender sees only the defender's observation: per client slot, the owner's statistics of its
query stream (:data:`knockoff_env.duel.FEATURES`), and its own cost so far. ``act(observation)``
gives one menu entry per client slot; ``end_episode(return)`` is where a learner learns.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from knockoff_env.duel import FEATURES, NONE
from knockoff_env.victim.detectors.prada import DEFAULT_DELTA

from ..gradient_bandit import gradient_step, masked_softmax


class Defender:
    """Base class: the duel's menu and client slots, and the per-episode hooks."""

    learns = False

    def __init__(self, duel):
        self.duel, self.menu = duel, duel.menu

    @property
    def name(self) -> str:
        return type(self).__name__

    def reset(self, seed: int | None = None, greedy: bool = False) -> None:
        """A new episode; ``greedy``: a learner plays its best guess and does not explore."""

    def act(self, observation: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def end_episode(self, episode_return: float) -> None:
        """Learn from the episode's return (nothing, for a defender that does not learn)."""

    def _entry(self, entry: int | str) -> int:
        if isinstance(entry, str):
            return self.menu.index(entry)
        if not isinstance(entry, (int, np.integer)) or not 0 <= entry < len(self.menu):
            raise ValueError(f"menu entry {entry!r}: give a name or an index in [0, {len(self.menu)}) of "
                             f"{list(self.menu.names)}")
        return int(entry)

    def _feature(self, feature: str) -> int:
        if feature not in FEATURES:
            raise ValueError(f"unknown client statistic {feature!r}; choose one of {FEATURES}")
        return FEATURES.index(feature)


class FixedDefender(Defender):
    """One menu entry for every client, every step: a fixed defence at a fixed strength."""

    def __init__(self, duel, entry: int | str):
        super().__init__(duel)
        self.entry = self._entry(entry)

    @property
    def name(self) -> str:
        return self.menu.names[self.entry]

    def act(self, observation):
        return np.full(self.duel.num_clients, self.entry, np.int64)


class TriggeredDefender(Defender):
    """``normal`` for a client until one of its statistics crosses ``threshold``, then ``strong`` for
    the rest of the episode (latched). Default: PRADA's statistic W below its δ (0.90, its alarm level),
    then refuse (the response PRADA's authors have in mind: stop serving the client). A detector's
    statistic counts only once it is ready (``prada_ready``)."""

    def __init__(self, duel, strong: int | str = "refuse", feature: str = "prada_statistic", threshold: float = DEFAULT_DELTA,
                 below: bool = True, normal: int | str = NONE):
        super().__init__(duel)
        self.strong, self.normal = self._entry(strong), self._entry(normal)
        self.feature, self.column = feature, self._feature(feature)
        self.ready = FEATURES.index("prada_ready") if feature == "prada_statistic" else None
        self.threshold, self.below = float(threshold), bool(below)
        self.triggered = np.zeros(duel.num_clients, bool)

    @property
    def name(self) -> str:
        sign = "<" if self.below else ">"
        return f"triggered ({self.feature} {sign} {self.threshold:g} → {self.menu.names[self.strong]})"

    def reset(self, seed=None, greedy=False):
        self.triggered[:] = False

    def act(self, observation):
        stats = self.duel.client_features(observation)
        value = stats[:, self.column]
        crossed = value < self.threshold if self.below else value > self.threshold
        crossed &= stats[:, FEATURES.index("volume")] > 0
        if self.ready is not None:
            crossed &= stats[:, self.ready] > 0
        self.triggered |= crossed
        return np.where(self.triggered, self.strong, self.normal).astype(np.int64)


class BanditDefender(Defender):
    """A learning defender: a gradient bandit over the menu for each context of a client.

    A client's context is the bin of one of its statistics (``feature``, cut at ``edges``), or
    "silent" before its first query. Each episode the defender draws one menu entry per context
    from π_c = softmax(H_c) (its response table) and answers every client by the table, at the
    client's context of the moment. At the episode's end, with return G and baseline Ḡ (an
    exponential moving average of past returns, step ``baseline_step``; the first return sets
    it), every context some client was in when the defender acted is updated by the paper's rule:
    H_c += α (G − Ḡ)(e_{a_c} − π_c). A greedy episode plays argmax H_c and learns nothing.
    Defaults: ``confidence_all`` (the mean top-1 confidence of the victim's true answers to the
    client) cut at 0.9, 0.95, 0.99, 0.999; α = 0.5 (returns are of order 1).
    """

    learns = True

    def __init__(self, duel, feature: str = "confidence_all", edges: Sequence[float] = (0.9, 0.95, 0.99, 0.999),
                 alpha: float = 0.5, baseline_step: float = 0.2, seed: int | None = None):
        super().__init__(duel)
        self.feature, self.column = feature, self._feature(feature)
        self.edges = np.asarray(edges, np.float64)
        if self.edges.ndim != 1 or np.any(np.diff(self.edges) <= 0):
            raise ValueError(f"edges={tuple(edges)!r} must be increasing cut points of {feature}")
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha={alpha!r} must be a positive step size")
        if not 0 < baseline_step <= 1:
            raise ValueError(f"baseline_step={baseline_step!r} must be in (0, 1]")
        self.alpha, self.baseline_step = float(alpha), float(baseline_step)
        self.preferences = np.zeros((len(self.edges) + 2, len(self.menu)))  # context 0: silent
        self.baseline: float | None = None
        self.rng = np.random.default_rng(seed)
        self.reset()

    def context_names(self) -> list[str]:
        cuts = [f"{e:g}" for e in self.edges]
        bounds = ["-inf", *cuts, "inf"]
        return ["silent"] + [f"{self.feature} in [{lo}, {hi})" for lo, hi in zip(bounds, bounds[1:])]

    def policy(self) -> np.ndarray:
        """π_c for every context: (contexts, menu entries)."""
        ok = np.ones(len(self.menu), bool)
        return np.stack([masked_softmax(h, ok) for h in self.preferences])

    def reset(self, seed=None, greedy=False):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.greedy = greedy
        probs = self.policy()
        self.table = probs.argmax(1) if greedy else \
            np.array([self.rng.choice(len(p), p=p) for p in probs], np.int64)
        self.used = np.zeros(len(self.preferences), bool)

    def contexts(self, observation: np.ndarray) -> np.ndarray:
        stats = self.duel.client_features(observation)
        bins = 1 + np.searchsorted(self.edges.astype(stats.dtype), stats[:, self.column], side="right")
        return np.where(stats[:, FEATURES.index("volume")] > 0, bins, 0)

    def act(self, observation):
        contexts = self.contexts(observation)
        self.used[contexts] = True
        return self.table[contexts].astype(np.int64)

    def end_episode(self, episode_return: float) -> None:
        if self.greedy:
            return
        if not np.isfinite(episode_return):
            raise ValueError(f"episode return {episode_return!r} is not finite")
        baseline = episode_return if self.baseline is None else self.baseline
        advantage = episode_return - baseline
        probs = self.policy()
        for c in np.flatnonzero(self.used):
            gradient_step(self.preferences[c], probs[c], int(self.table[c]), advantage, self.alpha)
        self.baseline = baseline + self.baseline_step * advantage
