"""The attacker's own fidelity estimate: agreement with the victim on queries held out of training.

A real attacker has no labelled test set of the victim's task, but every transfer-set query
carries the victim's answer. Queries kept out of training measure how often the knockoff's
top-1 agrees with the victim's on images it never learnt from. "Chance" is the agreement of
the best constant guess (the victim's most frequent top-1 among those queries); a fit that
stays within ``NEAR_CHANCE_MARGIN`` of the way from chance to 1, judged on at least
``MIN_JUDGED`` queries, is reported loudly.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..checks import is_finite_number

NEAR_CHANCE_MARGIN = 0.1  # of the distance from chance to perfect agreement
MIN_JUDGED = 20  # fewer held-out queries than this give no verdict: a handful of answers proves nothing


class NearChanceWarning(UserWarning):
    """The knockoff agrees with the victim about as often as a constant guess would."""


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) positions of ``n`` transfer-set queries; ``fraction`` of them held out, seeded.
    Nothing is held out when that would leave fewer than one query on either side."""
    if not is_finite_number(fraction) or not 0 <= fraction < 1:
        raise ValueError(f"holdout={fraction!r} must be a fraction in [0, 1) of the transfer set (default 0.1)")
    held = int(round(n * fraction))
    if held < 1 or held >= n:
        return np.arange(n), np.arange(0)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def chance_agreement(victim_labels: np.ndarray, num_classes: int) -> float:
    """Agreement of the best constant guess: the share of the victim's most frequent top-1."""
    if len(victim_labels) == 0:
        return 1.0 / num_classes
    return float(np.bincount(victim_labels, minlength=num_classes).max() / len(victim_labels))


def is_near_chance(agreement: float, chance: float, judged: int = MIN_JUDGED) -> bool:
    """True when ``agreement``, measured on ``judged`` queries (at least ``MIN_JUDGED``), is within
    the margin above ``chance`` (on the way to 1)."""
    return judged >= MIN_JUDGED and agreement < chance + NEAR_CHANCE_MARGIN * (1 - chance)


def agreement(predictions: np.ndarray | torch.Tensor, victim_labels: np.ndarray | torch.Tensor) -> float:
    """Share of queries where the knockoff's top-1 equals the victim's."""
    predictions, victim_labels = np.asarray(predictions), np.asarray(victim_labels)
    return float((predictions == victim_labels).mean()) if len(victim_labels) else float("nan")


def near_chance_advice(phase: str, agreement_value: float, chance: float, what_to_try: str) -> str:
    """The message shown when a fit stays near chance."""
    return (f"the {phase} knockoff agrees with the victim on {agreement_value:.1%} of held-out queries, near "
            f"chance ({chance:.1%}, a constant guess): it has not learnt the victim. Try: {what_to_try}")


def warn_near_chance(phase: str, agreement_value: float, chance: float, what_to_try: str) -> None:
    """Emit :class:`NearChanceWarning` with :func:`near_chance_advice`."""
    warnings.warn(near_chance_advice(phase, agreement_value, chance, what_to_try), NearChanceWarning, stacklevel=3)
