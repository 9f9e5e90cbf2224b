"""The clients of the duel as the model's owner sees them: each one's query-stream statistics,
and the benign clients' traffic.

The owner sees every client's queries and the victim's true answers to them (it computes them
before deciding how to answer), never the client's model. :class:`ClientStats` keeps, per
client, the statistics the defender observes (:data:`FEATURES`, each in [0, 1]):

* ``volume``: queries the client has sent / the attack's budget (capped at 1);
* ``prada_statistic``, ``prada_ready``, ``prada_alarm``: the client's own detector (PRADA by
  default, fed the queried images and the true answers): its test statistic W (1 until it has
  enough distances to test), whether it has, whether its alarm has fired;
* ``confidence_recent`` / ``confidence_all``: the mean top-1 probability of the true answers over
  the client's last ``window`` queries / all of them (natural queries of the victim's task get
  confident answers);
* ``entropy_recent`` / ``entropy_all``: the entropy of the histogram of the true answers' top-1
  classes over the same spans, divided by log K.

Before a client's first query every feature is 0 (``volume`` 0 says so).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch

from ..data.query_set import as_images_and_labels
from ..victim.detectors import parse_detector

FEATURES = ("volume", "prada_statistic", "prada_ready", "prada_alarm", "confidence_recent", "confidence_all",
            "entropy_recent", "entropy_all")


def normalised_entropy(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0 or len(counts) < 2:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(len(counts)))


class ClientStats:
    """One client's statistics and detector (see the module)."""

    def __init__(self, num_classes: int, window: int, horizon: int, detector: Any, device: torch.device):
        self.num_classes, self.window, self.horizon = num_classes, window, horizon
        self.detector_spec, self.device = detector, device
        self.reset()

    def reset(self) -> None:
        self.queries = 0
        self.confidence_sum = 0.0
        self.class_counts = np.zeros(self.num_classes, np.int64)
        self.recent_confidence: deque[float] = deque(maxlen=self.window)
        self.recent_classes: deque[int] = deque(maxlen=self.window)
        self.detector = parse_detector(self.detector_spec, self.device)

    def observe(self, images: torch.Tensor, true: torch.Tensor) -> None:
        """Take a batch of the client's queries with the victim's true answers, in query order."""
        top = true.max(1)
        confidence, classes = top.values.cpu().numpy(), top.indices.cpu().numpy()
        self.queries += len(classes)
        self.confidence_sum += float(confidence.sum())
        self.class_counts += np.bincount(classes, minlength=self.num_classes)
        self.recent_confidence.extend(confidence.tolist())
        self.recent_classes.extend(classes.tolist())
        if self.detector is not None:
            self.detector.observe(images.to(self.device), true)

    def features(self) -> np.ndarray:
        if self.queries == 0:
            return np.zeros(len(FEATURES), np.float32)
        statistic = self.detector.statistic() if self.detector is not None else None
        recent = np.bincount(np.asarray(self.recent_classes, np.int64), minlength=self.num_classes)
        return np.array([
            min(1.0, self.queries / self.horizon),
            1.0 if statistic is None else min(1.0, max(0.0, statistic)),
            float(statistic is not None),
            float(self.detector is not None and self.detector.alarm_at is not None),
            float(np.mean(self.recent_confidence)),
            self.confidence_sum / self.queries,
            normalised_entropy(recent),
            normalised_entropy(self.class_counts),
        ], np.float32)


class BenignTraffic:
    """Benign clients sending images of the victim's own distribution (``benign_set``).

    Each of ``clients`` clients sends ``per_step`` queries a step on average, as whole queries:
    client k sends ⌊(t+1)·per_step⌋ − ⌊t·per_step⌋ at step t. Each client goes through the
    benign set in its own order, drawn at reset, and starts again when it has sent all of it."""

    def __init__(self, benign_set: Any, clients: int, per_step: float):
        self.images, self.labels = as_images_and_labels(benign_set, "benign_set")
        if len(self.labels) == 0:
            raise ValueError("benign_set is empty; give images of the victim's own distribution with their labels")
        self.clients, self.per_step = clients, per_step
        self.orders: list[np.ndarray] = []
        self.positions: list[int] = []

    def reset(self, rng: np.random.Generator) -> None:
        self.orders = [rng.permutation(len(self.labels)) for _ in range(self.clients)]
        self.positions = [0] * self.clients

    def count(self, step: int) -> int:
        """Queries each benign client sends at step ``step`` (0-based)."""
        return math.floor((step + 1) * self.per_step + 1e-9) - math.floor(step * self.per_step + 1e-9)

    def total(self, steps: int) -> int:
        """Benign queries over ``steps`` steps, all clients together."""
        return self.clients * math.floor(steps * self.per_step + 1e-9)

    def draw(self, step: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """``[(client, images, labels)]`` of the benign clients that send queries at ``step``."""
        n = self.count(step)
        if n == 0:
            return []
        batches = []
        for k in range(self.clients):
            order, start = self.orders[k], self.positions[k]
            index = order[np.arange(start, start + n) % len(order)]
            self.positions[k] = (start + n) % len(order)
            batches.append((k, self._fetch(index), torch.from_numpy(self.labels[index])))
        return batches

    def _fetch(self, index: np.ndarray) -> torch.Tensor:
        if isinstance(self.images, torch.Tensor):
            return self.images[torch.from_numpy(index)]
        return torch.stack([torch.as_tensor(self.images[int(i)][0]) for i in index])
