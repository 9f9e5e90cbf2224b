"""Detectors: monitors of one client's query stream, run by the victim's owner.

A :class:`Detector` observes each answered batch (the queried images and the answers
returned) and reports the first query at which it raises its alarm. The env keeps one
detector per attack (one client), made from a spec such as ``"prada"`` or
``"prada:delta=0.9"``; a detector's state is a dict of tensors, so checkpoints keep it.
"""
from __future__ import annotations

import ast
import inspect
from typing import Any

import torch

from .base import Detector
from .prada import PRADA

DETECTORS = {"prada": PRADA}  # name in specs → class; a new detector is one file and one line here


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


__all__ = ["Detector", "PRADA", "DETECTORS", "parse_detector"]
