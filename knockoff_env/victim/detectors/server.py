"""The served victim's own monitor, as the attacker hears of it.

A server started with ``knockoff serve --detector SPEC`` watches each client's queries and,
once its detector fires, marks every answer with the client's query count at the alarm.
:class:`ServerAlarm` places that count in the env's stream of answered queries, so the env
ends (or flags) the episode exactly as with a detector run in-process.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Detector


class ServerAlarm(Detector):
    """Reports the alarm of a :class:`~knockoff_env.remote.RemoteVictim`'s server."""

    name = "server"

    def __init__(self, victim: Any):
        super().__init__()
        self.victim = victim

    def observe(self, images: torch.Tensor, answers: torch.Tensor) -> int | None:
        at = self.victim.server_alarm
        if self.alarm_at is None and at is not None and at <= self.seen + len(answers):
            self.alarm_at = max(at, self.seen + 1)
            index, self.seen = self.alarm_at - self.seen - 1, self.alarm_at
            return index
        self.seen += len(answers)
        return None

    def spec(self) -> str:
        return f"server:{self.victim.server_detector}"
