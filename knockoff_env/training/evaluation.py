"""Evaluating a knockoff against its victim, with the seen/unseen split of supplement D.2.

A victim class is *seen* when some answer in the transfer set has it as top-1: the
knockoff was trained on at least one image the victim called that class. Per-class
accuracies are averaged separately over seen and unseen classes.
"""
from __future__ import annotations

import numpy as np
import torch

from .online import batches, predict


def seen_classes(outputs: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Boolean mask over the victim's classes: top-1 of at least one transfer-set answer."""
    outputs = np.asarray(outputs)
    if outputs.ndim != 2:
        raise ValueError(f"transfer-set outputs must be (queries, classes), got shape {outputs.shape}")
    num_classes = outputs.shape[1] if num_classes is None else num_classes
    return np.bincount(outputs.argmax(1), minlength=num_classes)[:num_classes] > 0 if len(outputs) \
        else np.zeros(num_classes, bool)


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Top-1 accuracy of every class (NaN for a class absent from ``labels``)."""
    labels = np.asarray(labels)
    hits = np.bincount(labels, weights=np.asarray(predictions) == labels, minlength=num_classes)
    totals = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def evaluation_report(knockoff_predictions: np.ndarray, victim_predictions: np.ndarray, labels: np.ndarray,
                      transfer_outputs: np.ndarray) -> dict:
    """Top-1 accuracy of knockoff and victim, ×victim, agreement, and per-class accuracy split
    into classes seen / unseen in the transfer set (means over the classes of each group)."""
    labels = np.asarray(labels)
    num_classes = np.asarray(transfer_outputs).shape[1]
    knockoff_accuracy = float((knockoff_predictions == labels).mean())
    victim_accuracy = float((victim_predictions == labels).mean())
    seen = seen_classes(transfer_outputs, num_classes)
    per_class = per_class_accuracy(knockoff_predictions, labels, num_classes)

    def mean(mask: np.ndarray) -> float | None:
        values = per_class[mask & ~np.isnan(per_class)]
        return float(values.mean()) if values.size else None

    return {"knockoff_accuracy": knockoff_accuracy, "victim_accuracy": victim_accuracy,
            "times_victim": knockoff_accuracy / victim_accuracy if victim_accuracy > 0 else float("nan"),
            "agreement": float((knockoff_predictions == victim_predictions).mean()),
            "seen_classes": int(seen.sum()), "unseen_classes": int((~seen).sum()),
            "seen_class_accuracy": mean(seen), "unseen_class_accuracy": mean(~seen),
            "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class]}


class Evaluation:
    """Scores knockoffs against the victim on a labelled eval set, the one evaluation path of the
    env, the runner and the command line. The victim's predictions and the defence's cost are
    computed once: evaluation images are not attack queries and are not charged.

    ``victim``: a :class:`~knockoff_env.victim.BlackBox` (its ``evaluation_model()`` answers, its
    ``defence`` is what the cost measures). ``eval_set``: ``(images or Dataset, labels)``.
    """

    def __init__(self, victim, eval_set: tuple, device):
        data, self.labels = eval_set
        self.data = (data, torch.from_numpy(self.labels)) if isinstance(data, torch.Tensor) else data
        self.victim, self.device = victim, device
        self._victim_predictions: np.ndarray | None = None
        self._defence_cost: dict[str, float] | None = None

    def victim_predictions(self) -> np.ndarray:
        if self._victim_predictions is None:
            self._victim_predictions = predict(self.victim.evaluation_model(), self.data, self.device)
        return self._victim_predictions

    def report(self, model, transfer_outputs: np.ndarray) -> dict:
        """:func:`evaluation_report` of ``model`` plus the defence's cost: ``victim_accuracy_defended``
        (top-1 of the defended answers) and ``defence_l1`` (mean L1 from the true answers)."""
        report = evaluation_report(predict(model, self.data, self.device), self.victim_predictions(), self.labels,
                                   transfer_outputs)
        report.update(self.defence_cost(report["victim_accuracy"]))
        return report

    def defence_cost(self, victim_accuracy: float) -> dict[str, float]:
        """Without a defence in this black box (none, or one that runs on a remote victim's server)
        there is nothing to measure, and nothing is queried."""
        if not self.victim.defence:
            return {"victim_accuracy_defended": victim_accuracy, "defence_l1": 0.0}
        if self._defence_cost is None:
            hits, l1, first = 0.0, 0.0, 0
            for x, *_ in batches(self.data, self.victim.batch_size):
                true, defended = self.victim.true_and_defended(x)
                hits += float((defended.argmax(1).cpu().numpy() == self.labels[first:first + len(x)]).sum())
                l1 += float((defended - true).abs().sum())
                first += len(x)
            self._defence_cost = {"victim_accuracy_defended": hits / first, "defence_l1": l1 / first}
        return self._defence_cost
