"""The defender's menu: the ways the owner may answer one client's batch of queries.

An entry is ``"none"`` (the true answers), ``"refuse"`` (no answer at all) or any defence spec
of :mod:`knockoff_env.victim.defences` (``"mad_argmax:eps=1.0"``, ``"noise:sigma=0.5"``,
``"reverse_sigmoid:beta=0.7,gamma=0.2+top_k:k=1"``): the spec's defence and its strength.

What a benign answer costs the owner (:func:`benign_cost`): the accuracy it lost against the
benign query's label (1 if the true answer's top-1 was right and the given one's is not, −1
the other way round) and its perturbation, the L1 distance ‖ỹ − y‖₁ ∈ [0, 2] from the true
answer. A refused query gets no answer: it loses the true answer's accuracy and counts as the
largest perturbation, 2.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import torch

from ..victim.defences import Chain, parse_defence

NONE, REFUSE = "none", "refuse"
MENU = (NONE, "mad_argmax:eps=1.0", "reverse_sigmoid:beta=0.7,gamma=0.2", "noise:sigma=0.5", "top_k:k=1", REFUSE)
REFUSED_L1 = 2.0  # a refused answer counts as the farthest any answer can be from the true one


class Menu:
    """The entries, each parsed once and bound to the victim (MAD's surrogate, say).

    ``entries``: the names above, in the order the defender's action indexes them.
    ``victim`` / ``device``: what the defences are bound to (as a :class:`BlackBox` binds its own)."""

    def __init__(self, entries: Sequence[str], victim: Callable, device: torch.device):
        if isinstance(entries, str) or not isinstance(entries, Sequence) or not entries:
            raise ValueError(f"menu={entries!r} must be a non-empty list of entries such as "
                             f"{list(MENU)} ('none', 'refuse' or defence specs)")
        names = [e.strip() if isinstance(e, str) else e for e in entries]
        if not all(isinstance(e, str) and e for e in names):
            raise ValueError(f"menu={entries!r}: every entry is a string: 'none', 'refuse' or a defence spec "
                             "such as 'mad_argmax:eps=1.0'")
        if len(set(names)) != len(names):
            raise ValueError(f"menu={entries!r} names an entry twice; each entry must be distinct")
        self.names = tuple(names)
        self.defences: list[Chain | None] = []
        for name in self.names:
            if name in (NONE, REFUSE):
                self.defences.append(None)
                continue
            chain = parse_defence(name)  # a bad spec is refused here, with the known defences listed
            chain.bind(victim, device)
            self.defences.append(chain)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The position of entry ``name``: its exact spec, or a defence name that one entry has
        (``"mad_argmax"`` for ``"mad_argmax:eps=1.0"``)."""
        if name in self.names:
            return self.names.index(name)
        matches = [i for i, n in enumerate(self.names) if n.split(":", 1)[0] == name]
        if len(matches) != 1:
            found = "several entries" if matches else "no entry"
            raise ValueError(f"{found} of the menu {list(self.names)} is {name!r}; give one of them exactly")
        return matches[0]

    def refuses(self, index: int) -> bool:
        return self.names[index] == REFUSE

    def answer(self, index: int, probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        """The answers entry ``index`` gives for the true answers ``probs`` (None: refused)."""
        if self.refuses(index):
            return None
        defence = self.defences[index]
        return probs if defence is None else defence(probs, images)


def benign_cost(true: torch.Tensor, answered: torch.Tensor | None, labels: torch.Tensor) -> tuple[float, float]:
    """Summed over a batch of benign queries: (accuracy lost, L1 perturbation); see the module."""
    labels = labels.to(true.device)
    right = (true.argmax(1) == labels).float()
    if answered is None:
        return float(right.sum()), REFUSED_L1 * len(true)
    given = (answered.argmax(1) == labels).float()
    return float((right - given).sum()), float((answered - true).abs().sum())
