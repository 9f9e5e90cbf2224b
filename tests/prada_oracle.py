"""A per-query PRADA written plainly from the authors' description (numpy, float64, lists):
the oracle the batched detector is tested and benchmarked against.

One query at a time: the first query of a class opens its growing set with distance 0 and
threshold 0; any later one records its nearest-member distance, joins when that distance
exceeds the class threshold, and then the threshold becomes the larger of itself and
mean − std of the member distances. Queries number 0, 10, 20, … (counted from 0) pool the
distance lists holding at least 10 values, drop those 3 std or more from the mean, and test
Shapiro–Wilk when more than 100 remain.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import shapiro


class OraclePRADA:
    def __init__(self, delta: float, every: int = 10, min_per_class: int = 10, min_distances: int = 100):
        self.delta, self.every, self.min_per_class, self.min_distances = delta, every, min_per_class, min_distances
        self.sets: dict[int, list[np.ndarray]] = {}
        self.set_distances: dict[int, list[float]] = {}
        self.thresholds: dict[int, float] = {}
        self.query_distances: dict[int, list[float]] = {}
        self.joined: list[int] = []     # stream positions of the queries that joined a growing set
        self.statistics: list[tuple[int, float]] = []  # (queries seen, W) at every test that ran
        self.count = 0
        self.alarm_at = None

    def query(self, x: np.ndarray, c: int) -> None:
        x = np.asarray(x, np.float64).ravel()
        if c not in self.sets:
            self.sets[c], self.set_distances[c], self.thresholds[c] = [x], [0.0], 0.0
            self.joined.append(self.count)
        else:
            d = min(float(np.sqrt(((m - x) ** 2).sum())) for m in self.sets[c])
            self.query_distances.setdefault(c, []).append(d)
            if d > self.thresholds[c]:
                self.sets[c].append(x)
                self.set_distances[c].append(d)
                values = np.array(self.set_distances[c])
                self.thresholds[c] = max(self.thresholds[c], values.mean() - values.std())
                self.joined.append(self.count)
        if self.count % self.every == 0:
            pooled = [d for ds in self.query_distances.values() if len(ds) >= self.min_per_class for d in ds]
            pooled = np.array(pooled)
            if pooled.size:
                pooled = pooled[np.abs(pooled - pooled.mean()) < 3 * pooled.std()]
            if pooled.size > self.min_distances:
                w = float(shapiro(pooled).statistic)
                self.statistics.append((self.count + 1, w))
                if w < self.delta and self.alarm_at is None:
                    self.alarm_at = self.count + 1
        self.count += 1
