"""Detectors: monitors of one client's query stream, run by the victim's owner.

A :class:`Detector` observes each answered batch (the queried images and the answers
returned) and reports the first query at which it raises its alarm. The env keeps one
detector per attack (one client), made from a spec such as ``"prada"`` or
``"prada:delta=0.9"``; a detector's state is a dict of tensors, so checkpoints keep it.
"""
from __future__ import annotations

import ast
import inspect
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


def detector_names() -> tuple[str, ...]:
    return tuple(DETECTORS)


def parse_detector(spec: None | str | Detector, device: torch.device | str = "cpu") -> Detector | None:
    """``"prada"`` / ``"prada:delta=0.9,every=10"`` / a Detector / None."""
    if spec is None or spec == "" or spec == "none":
        return None
    if isinstance(spec, Detector):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"detector={spec!r}: give a spec string such as 'prada' or a Detector")
    name, _, args = spec.strip().partition(":")
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)} (e.g. 'prada:delta=0.9')")
    allowed = tuple(p for p in inspect.signature(DETECTORS[name]).parameters if p != "device")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in allowed:
            raise ValueError(f"detector {name!r}: bad parameter {item!r}; it takes {', '.join(allowed)} as key=value")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return DETECTORS[name](device=device, **kwargs)


from .prada import PRADA  # noqa: E402  (the registry needs the base class above)

DETECTORS = {"prada": PRADA}
__all__ = ["Detector", "PRADA", "DETECTORS", "parse_detector"]
