"""PRADA (Juuti, Szyller, Marchal, Asokan, EuroS&P 2019): detect model extraction from the
distribution of distances between a client's queries.

For each query x with predicted class c, PRADA takes d = the minimum L2 distance from x to
the growing set G_c of earlier queries of class c (the first query of a class only starts
G_c). Every d joins the set D; x joins G_c when d > T_c, and then
T_c ← max(T_c, mean(D_c) − std(D_c)) over the distances D_c of G_c's members. Once D holds
``min_distances`` values (paper: 100), each new query runs the Shapiro–Wilk test on D
without its outliers (values more than 3 std from the mean); a statistic W < δ raises the
alarm. Natural queries give roughly normal distances; synthetic ones (small perturbations
of a few seeds) give a skewed, many-small-distances D.

Choices here: δ = 0.95 by default. The paper tunes δ per victim so that benign streams
raise no alarm; 0.95 is the conventional normality threshold and is what we use unless
told otherwise (``prada:delta=...``). The class of a query is the top-1 of the answer the
API returned (the same as the victim's unless a defence moves the top-1): that is what a
journal keeps, so a resumed attack replays the detector exactly. Images larger than
``pool`` pixels a side are average-pooled to ``pool``×``pool`` before distances (the
paper's MNIST and GTSRB are 28 and 32 px, so they are untouched; at ImageNet scale this
keeps the stored sets to 12 KB a query). The alarm latches: after it, queries are counted
but no longer tested.

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


class PRADA(Detector):
    """PRADA for one client. ``delta``: alarm when Shapiro–Wilk W < δ; ``min_distances``:
    distances collected before the first test; ``pool``: largest image side kept."""

    name = "prada"

    def __init__(self, delta: float = 0.95, min_distances: int = 100, pool: int = 32,
                 device: torch.device | str = "cpu"):
        super().__init__()
        if not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise ValueError(f"prada delta={delta!r} must be a W threshold in (0, 1) (default 0.95)")
        if not isinstance(min_distances, int) or min_distances < 3:
            raise ValueError(f"prada min_distances={min_distances!r} must be an integer ≥ 3 (paper: 100)")
        if not isinstance(pool, int) or pool < 1:
            raise ValueError(f"prada pool={pool!r} must be a positive image side in pixels")
        self.delta, self.min_distances, self.pool = float(delta), min_distances, pool
        self.device = torch.device(device)
        self.reset()

    def _params(self):
        return {"delta": self.delta, "min_distances": self.min_distances, "pool": self.pool}

    def reset(self) -> None:
        super().reset()
        self.members: dict[int, torch.Tensor] = {}   # class -> (capacity, dims) buffer
        self.counts: dict[int, int] = {}
        self.thresholds: dict[int, float] = {}
        self.member_distances: dict[int, list[float]] = {}
        self.distances: list[float] = []
        self.order: list[int] = []  # class of each member, in the order they joined (for state_dict)

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

    def statistic(self) -> float | None:
        """Shapiro–Wilk W of D without outliers (> 3 std from the mean); 0 for constant D; None
        while D holds fewer than ``min_distances`` values (no test yet)."""
        if len(self.distances) < self.min_distances:
            return None
        d = np.asarray(self.distances)
        mean, std = d.mean(), d.std()
        kept = d[np.abs(d - mean) <= 3 * std] if std > 0 else d
        if kept.size < 3 or np.ptp(kept) == 0:
            return 0.0  # all distances equal: as far from natural queries as it gets
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
        alarm = None
        for i, c in enumerate(classes):
            self.seen += 1
            same = [host[i, 1 + j] for j in joined if classes[j] == c]
            if self.counts.get(c, 0) == 0 and not same:  # the class's first query starts G_c
                joined.append(i)
                self._store(c, feats[i])
                continue
            d = min([host[i, 0], *same])
            self.distances.append(d)
            if d > self.thresholds.get(c, 0.0):
                joined.append(i)
                self._store(c, feats[i])
                members = self.member_distances.setdefault(c, [])
                members.append(d)
                self.thresholds[c] = max(self.thresholds.get(c, 0.0), float(np.mean(members) - np.std(members)))
            if len(self.distances) >= self.min_distances and self.statistic() < self.delta:
                self.alarm_at, alarm = self.seen, i
                break
        return alarm

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        order = np.asarray(self.order, np.int64)
        position = {c: 0 for c in self.counts}
        rows = []
        for c in self.order:
            rows.append(self.members[c][position[c]])
            position[c] += 1
        dims = rows[0].shape[0] if rows else 0
        state.update({
            "member_classes": order,
            "members": torch.stack(rows).cpu() if rows else torch.zeros((0, dims)),
            "threshold_classes": np.asarray(list(self.thresholds), np.int64),
            "thresholds": np.asarray(list(self.thresholds.values()), np.float64),
            "distance_classes": np.asarray([c for c, ds in self.member_distances.items() for _ in ds], np.int64),
            "member_distances": np.asarray([d for ds in self.member_distances.values() for d in ds], np.float64),
            "distances": np.asarray(self.distances, np.float64)})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reset()
        super().load_state_dict(state)
        members = torch.as_tensor(state["members"]).to(self.device, torch.float32)
        for c, feat in zip(np.asarray(state["member_classes"]).tolist(), members):
            self._store(int(c), feat)
        self.thresholds = {int(c): float(t) for c, t in zip(np.asarray(state["threshold_classes"]),
                                                            np.asarray(state["thresholds"]))}
        for c, d in zip(np.asarray(state["distance_classes"]).tolist(), np.asarray(state["member_distances"])):
            self.member_distances.setdefault(int(c), []).append(float(d))
        self.distances = [float(d) for d in np.asarray(state["distances"])]
