"""Evaluating a knockoff against its victim, with the seen/unseen split of supplement D.2.

A victim class is *seen* when some answer in the transfer set has it as top-1: the
knockoff was trained on at least one image the victim called that class. Per-class
accuracies are averaged separately over seen and unseen classes.
"""
from __future__ import annotations

import numpy as np


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
