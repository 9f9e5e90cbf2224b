"""PRADA (Juuti, Szyller, Marchal, Asokan, EuroS&P 2019): detect model extraction from the
distribution of distances between a client's queries.

As the authors' code (SSGAalto/prada-protecting-against-dnn-model-stealing-attacks) does it,
per query x with predicted class c:

* the first query of class c starts its growing set G_c, with threshold T_c = 0 and the
  list of member distances DG_c = [0] (the starting 0);
* every later query gets d = the minimum L2 distance from x to G_c; d joins D_c, the
  class's list of query distances; when d > T_c, x joins G_c, d joins DG_c and
  T_c ← max(T_c, mean(DG_c) − std(DG_c));
* every ``every``-th query (the 1st, 11th, 21st, … for 10, as the reference counts) the
  lists D_c of the classes holding at least ``min_per_class`` distances are pooled, values
  3 std or more from the mean dropped, and if more than ``min_distances`` remain, the
  Shapiro–Wilk statistic W of the rest is tested: W < δ raises the alarm.

Natural queries give roughly normal distances; synthetic ones (small perturbations of a
few seeds) give a skewed, many-small-distances D.

Where this differs, on purpose: the alarm latches (the reference re-decides at every
test; an attack once detected stays detected); a pooled set whose kept distances are all
equal (a client repeating one image) counts as W = 0, where the reference runs no test or
gets W = 1; the class of a query is the top-1 of the answer the API returned (the same as
the victim's unless a defence moves it), which a journal keeps, so a resumed attack
replays the detector exactly; images larger than ``pool`` pixels a side are
average-pooled to ``pool``×``pool`` first (the paper's MNIST and GTSRB, 28 and 32 px, are
untouched). δ's default, 0.90, was chosen by measurement (``benchmarks/prada.py``): the
lowest W of any test on 60 benign streams of two victims' own images (natural, sorted by
class and shuffled orders) was 0.914; Jacobian-augmentation streams go to 0.55–0.83.

Incremental nearest neighbours: each class's members are one growing device tensor
(capacity doubled as needed); a batch's new queries get their minimum distance to it from
one ``torch.cdist`` per class present, and to each other from one small (n, n) ``cdist``.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import shapiro

from .base import Detector

DEFAULT_DELTA = 0.90


class PRADA(Detector):
    """PRADA for one client. ``delta``: alarm when Shapiro–Wilk W < δ; ``min_distances``: a
    test needs more than this many pooled distances after outliers are dropped (paper:
    100); ``every``: test cadence in queries; ``min_per_class``: distances a class needs
    before its own join the pool; ``pool``: largest image side kept."""

    name = "prada"

    def __init__(self, delta: float = DEFAULT_DELTA, min_distances: int = 100, every: int = 10,
                 min_per_class: int = 10, pool: int = 32, device: torch.device | str = "cpu"):
        super().__init__()
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise ValueError(f"prada delta={delta!r} must be a W threshold in (0, 1) (default {DEFAULT_DELTA})")
        for key, value, low in (("min_distances", min_distances, 2), ("every", every, 1),
                                ("min_per_class", min_per_class, 1), ("pool", pool, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"prada {key}={value!r} must be an integer ≥ {low}")
        self.delta, self.min_distances, self.every = float(delta), min_distances, every
        self.min_per_class, self.pool = min_per_class, pool
        self.device = torch.device(device)
        self.reset()

    def _params(self):
        return {"delta": self.delta, "min_distances": self.min_distances, "every": self.every,
                "min_per_class": self.min_per_class, "pool": self.pool}

    def reset(self) -> None:
        super().reset()
        self.members: dict[int, torch.Tensor] = {}   # class -> (capacity, dims) buffer of G_c
        self.counts: dict[int, int] = {}
        self.thresholds: dict[int, float] = {}       # T_c
        self.member_stats: dict[int, np.ndarray] = {}  # DG_c (starting with 0) as Welford's (count, mean, M2)
        self.class_distances: dict[int, Distances] = {}  # D_c
        self.order: list[int] = []  # class of each member, in the order they joined (for state_dict)

    @property
    def distances(self) -> np.ndarray:
        """Every query distance so far (all classes)."""
        return np.concatenate([ds.values for ds in self.class_distances.values()] or [np.zeros(0)])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        if x.ndim == 4 and max(x.shape[-2:]) > self.pool:
            x = torch.nn.functional.adaptive_avg_pool2d(x, self.pool)
        return x.flatten(1)

    def _nearest(self, feats: torch.Tensor, classes: list[int]) -> torch.Tensor:
        """Each query's minimum distance to its class's stored members (inf if none)."""
        nearest = torch.full((len(classes),), float("inf"), device=feats.device)
        for c in set(classes):
            count = self.counts.get(c, 0)
            if count:
                rows = torch.tensor([i for i, ci in enumerate(classes) if ci == c], device=feats.device)
                dist = torch.cdist(feats[rows], self.members[c][:count], compute_mode="donot_use_mm_for_euclid_dist")
                nearest[rows] = dist.min(1).values
        return nearest

    def _store(self, c: int, feat: torch.Tensor) -> None:
        count = self.counts.get(c, 0)
        buffer = self.members.get(c)
        if buffer is None or count == buffer.shape[0]:
            grown = torch.empty((max(16, 2 * count), feat.shape[0]), device=feat.device)
            if count:
                grown[:count] = buffer[:count]
            self.members[c] = buffer = grown
        buffer[count] = feat
        self.counts[c] = count + 1
        self.order.append(c)

    def _join(self, c: int, feat: torch.Tensor, d: float | None) -> None:
        """x joins G_c: the first member with distance 0 and T_c = 0, later ones update T_c
        to max(T_c, mean − std) of DG_c, kept as running moments (Welford), O(1) a member."""
        self._store(c, feat)
        if d is None:
            self.thresholds[c], self.member_stats[c] = 0.0, np.array([1.0, 0.0, 0.0])
            return
        stats = self.member_stats[c]
        stats[0] += 1
        delta = d - stats[1]
        stats[1] += delta / stats[0]
        stats[2] += delta * (d - stats[1])
        std = np.sqrt(max(stats[2], 0.0) / stats[0])
        self.thresholds[c] = max(self.thresholds[c], float(stats[1] - std))

    def pooled(self) -> np.ndarray:
        """The distances tested: classes with at least ``min_per_class`` of them, outliers
        (3 std or more from the mean) dropped."""
        lists = [ds.values for ds in self.class_distances.values() if len(ds) >= self.min_per_class]
        d = np.concatenate(lists) if lists else np.zeros(0)
        if d.size == 0:
            return d
        mean, std = d.mean(), d.std()
        return d[np.abs(d - mean) < 3 * std] if std > 0 else d

    def statistic(self) -> float | None:
        """Shapiro–Wilk W of the pooled distances; None while too few (no test); 0 when
        they are all equal."""
        kept = self.pooled()
        if kept.size <= self.min_distances:
            return None
        if np.ptp(kept) == 0:
            return 0.0  # one image over and over: as far from natural queries as it gets
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns that p is approximate above 5000; W is what we use
            return float(shapiro(kept).statistic)

    def observe(self, images: torch.Tensor, answers: torch.Tensor) -> int | None:
        if self.alarm_at is not None:
            self.seen += len(answers)
            return None
        feats = self.features(images)
        classes = answers.argmax(1).tolist()
        nearest = self._nearest(feats, classes)
        within = torch.cdist(feats, feats, compute_mode="donot_use_mm_for_euclid_dist")
        host = torch.cat([nearest[:, None], within], 1).cpu().numpy().astype(np.float64)
        joined: list[int] = []
        for i, c in enumerate(classes):
            same = [host[i, 1 + j] for j in joined if classes[j] == c]
            if c not in self.thresholds:
                joined.append(i)
                self._join(c, feats[i], None)
            else:
                d = float(min([host[i, 0], *same]))
                self.class_distances.setdefault(c, Distances()).append(d)
                if d > self.thresholds[c]:
                    joined.append(i)
                    self._join(c, feats[i], d)
            self.seen += 1
            if (self.seen - 1) % self.every == 0:
                w = self.statistic()
                if w is not None and w < self.delta:
                    self.alarm_at = self.seen
                    return i
        return None

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        position = {c: 0 for c in self.counts}
        rows = []
        for c in self.order:
            rows.append(self.members[c][position[c]])
            position[c] += 1
        dims = rows[0].shape[0] if rows else 0
        state.update({
            "member_classes": np.asarray(self.order, np.int64),
            "members": torch.stack(rows).cpu() if rows else torch.zeros((0, dims)),
            "threshold_classes": np.asarray(list(self.thresholds), np.int64),
            "thresholds": np.asarray(list(self.thresholds.values()), np.float64),
            "member_stats": np.asarray([self.member_stats[c] for c in self.thresholds], np.float64).reshape(-1, 3),
            "query_classes": np.asarray([c for c, ds in self.class_distances.items() for _ in range(len(ds))],
                                        np.int64),
            "query_distances": self.distances})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "member_stats" not in state:
            raise ValueError("this PRADA state was saved by an older version (before the reference's growing-set "
                             "rules); its detector cannot be resumed: start the run afresh")
        self.reset()
        super().load_state_dict(state)
        members = torch.as_tensor(state["members"]).to(self.device, torch.float32)
        for c, feat in zip(np.asarray(state["member_classes"]).tolist(), members):
            self._store(int(c), feat)
        classes = np.asarray(state["threshold_classes"]).tolist()
        self.thresholds = {int(c): float(t) for c, t in zip(classes, np.asarray(state["thresholds"]))}
        self.member_stats = {int(c): np.array(stats, np.float64)
                             for c, stats in zip(classes, np.asarray(state["member_stats"]))}
        for c, d in zip(np.asarray(state["query_classes"]).tolist(), np.asarray(state["query_distances"]).tolist()):
            self.class_distances.setdefault(int(c), Distances()).append(d)


class Distances:
    """A growing float64 array (capacity doubled as needed)."""

    def __init__(self):
        self._buffer, self._size = np.empty(64), 0

    def append(self, value: float) -> None:
        if self._size == len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.empty(len(self._buffer))])
        self._buffer[self._size] = value
        self._size += 1

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> np.ndarray:
        return self._buffer[:self._size]
