"""Checks on user-supplied numbers and paths, so that a bad option is a clear error, not a crash
in ``int()`` or a run that fails at its end when it writes its results."""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from .errors import ConfigError


def is_integer(value) -> bool:
    """An integer, or an integral float; not a bool, NaN, infinity, text or None."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and int(value) == value)


def is_finite_number(value) -> bool:
    """A real number that is not NaN or infinite (bools and text are not numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(text: str, flag: str) -> None:
    """A folder that exists and is writable, or can be created."""
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{flag} {text} is an existing file, not a folder",
                              f"give {flag} a folder (new or existing) for the run's files")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {text} is not writable by you", "choose a folder you can write to")
        return
    parent = _nearest_existing(path.absolute().parent)
    if not parent.is_dir():
        raise ConfigError(f"{flag} {text} cannot be created: {parent} is a file",
                          f"give {flag} a path whose parents are folders")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {text} cannot be created: {parent} is not writable by you",
                          "choose a folder you can write to")


def check_file(text: str, flag: str) -> None:
    """A file path whose folder exists and is writable (the file itself is written at the end)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"{flag} {text} is a folder", f"give {flag} a file name, e.g. {Path(text) / 'summary.json'}")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {text}: the folder {folder} does not exist", "create it first, or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag} {text} is not writable by you", "choose a path you can write to")
