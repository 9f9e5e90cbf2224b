"""Labels drawn in proportion to the images they have left: one draw (:func:`pick`), or many
in a row as the counts shrink (:class:`Counts`), with the same result from the same uniforms."""
from __future__ import annotations

import numpy as np


def pick(rng: np.random.Generator, weights: np.ndarray) -> int:
    """A label drawn with probabilities proportional to ``weights`` (images left), from one uniform
    number: ``rng.choice(len(weights), p=weights / weights.sum())`` without its checks and divisions
    (they cost more than the rest of the step). The label is the first whose cumulative weight
    exceeds ``u × total``."""
    cdf = weights.cumsum()
    return int(cdf.searchsorted(rng.random() * cdf[-1], side="right"))


class Counts:
    """Integer weights in a Fenwick tree: the label :func:`pick` would draw for a uniform ``u``,
    and a weight lowered, each in O(log labels), where :func:`pick` sums all weights every draw
    (a batch of random steps draws hundreds of labels in a row)."""

    def __init__(self, weights: np.ndarray):
        self.weights = [int(w) for w in weights]
        self.total = sum(self.weights)
        self.tree = [0, *self.weights]
        n = len(self.weights)
        for i in range(1, n + 1):
            parent = i + (i & -i)
            if parent <= n:
                self.tree[parent] += self.tree[i]
        self.top = 1 << (n.bit_length() - 1) if n else 0

    def find(self, u: float) -> int:
        """The first label whose cumulative weight exceeds ``u × total`` (u in [0, 1))."""
        x, at, below, step, tree, n = u * self.total, 0, 0, self.top, self.tree, len(self.weights)
        while step:
            nxt = at + step
            if nxt <= n and below + tree[nxt] <= x:
                at, below = nxt, below + tree[nxt]
            step >>= 1
        return at

    def take(self, label: int, count: int) -> None:
        """Lower ``label``'s weight by ``count``."""
        self.weights[label] -= count
        self.total -= count
        i, tree, n = label + 1, self.tree, len(self.weights)
        while i <= n:
            tree[i] -= count
            i += i & -i

    def draws(self, uniforms: list[float], per_draw: int, left: int) -> list[int]:
        """A label for each uniform in turn (:meth:`find`), each taking up to ``per_draw`` of its
        weight (:meth:`take`), at most ``left`` in all; stops early once ``left`` or every weight
        is spent."""
        labels = []
        for u in uniforms:
            if left <= 0 or self.total <= 0:
                break
            label = self.find(u)
            taken = min(per_draw, left, self.weights[label])
            self.take(label, taken)
            left -= taken
            labels.append(label)
        return labels
