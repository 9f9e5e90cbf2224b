"""The detector interface: a monitor of one client's query stream, run by the victim's owner."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class Detector:
    """Watches one client's queries; ``alarm_at`` is the number of queries seen when the
    alarm was raised (None until then)."""

    name = ""

    def __init__(self):
        self.alarm_at: int | None = None
        self.seen = 0

    def reset(self) -> None:
        """Forget the stream (a new client)."""
        self.alarm_at, self.seen = None, 0

    def observe(self, images: torch.Tensor, answers: torch.Tensor) -> int | None:
        """Take a batch in query order; the index in it of the query that raised the alarm,
        if it was raised in this batch (later queries of the batch are then not observed)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"alarm_at": -1 if self.alarm_at is None else self.alarm_at, "seen": self.seen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        alarm = int(state["alarm_at"])
        self.alarm_at, self.seen = (None if alarm < 0 else alarm), int(state["seen"])

    def spec(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in self._params().items())
        return f"{self.name}:{params}" if params else self.name

    def _params(self) -> dict[str, Any]:
        return {}
