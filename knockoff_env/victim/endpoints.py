"""A victim named by a URL: the one place where a URL becomes a black box.

Transports register the URL schemes they speak (the HTTP client, :mod:`.remote`, registers
``http`` and ``https``; ``import knockoff_env`` imports it), so the env core and the worlds
take a victim's URL without knowing how it is reached.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .blackbox import BlackBox

TRANSPORTS: dict[str, Callable[..., BlackBox]] = {}


def register_transport(schemes: Iterable[str], opener: Callable[..., BlackBox]) -> None:
    """Let ``opener(url, **options)`` answer victims at URLs of these ``schemes``."""
    for scheme in schemes:
        TRANSPORTS[scheme] = opener


def open_victim(url: str, **options) -> BlackBox:
    """The black box at ``url``; ``options`` go to its transport (see :class:`.remote.RemoteVictim`)."""
    scheme, sep, _ = str(url).partition("://")
    if not sep or scheme not in TRANSPORTS:
        raise ValueError(f"victim URL {url!r}: no transport for {scheme + '://' if sep else 'it'}; "
                         f"use one of {sorted(s + '://' for s in TRANSPORTS)} (e.g. `knockoff serve`'s address)")
    return TRANSPORTS[scheme](url, **options)
