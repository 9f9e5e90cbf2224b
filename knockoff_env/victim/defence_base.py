"""The base of every defence: a batched transformation of the victim's answers."""
from __future__ import annotations

from typing import Any, Callable

import torch


class Defence:
    """A batched transformation of the victim's answers (subclasses set ``name``).

    ``__call__(probs, images)``: ``probs`` (n, K) true answers, ``images`` the queried batch
    (on the victim's device); returns the (n, K) answers. A defence keeps no state that
    changes with the queries, so answering is a pure function of the query."""

    name = ""

    def bind(self, victim: Callable, device: torch.device) -> None:
        """Called once by the black box: the victim model and its device."""

    @property
    def needs_data(self) -> bool:
        """Whether the defence must first be :meth:`fit` on its owner's data."""
        return False

    def fit(self, data: Any) -> None:
        """Prepare on the owner's data (``(images, labels)`` or a Dataset); most need none."""

    def __call__(self, probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> str:
        """The spec string that rebuilds this defence (for configs and logs)."""
        params = ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self._params().items())
        return f"{self.name}:{params}" if params else self.name

    def _params(self) -> dict[str, Any]:
        return {}
