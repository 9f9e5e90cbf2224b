"""The project's own errors: each says what went wrong and what to do about it.

They subclass the built-in exception a caller would expect (``ValueError`` for a bad value,
``FileNotFoundError`` for a missing file), so ``except ValueError`` keeps working; the common
base :class:`KnockoffError` lets a caller (the CLI) tell them from failures inside torch.
An error is built from ``what`` went wrong and a ``hint`` of what to do; ``str(err)`` is
``"<what> — <hint>"``.
"""
from __future__ import annotations


class KnockoffError(Exception):
    """Base of every error the project raises on purpose about the user's input."""

    def __init__(self, what: str, hint: str = ""):
        self.what, self.hint = what, hint
        super().__init__(f"{what} — {hint}" if hint else what)


class ConfigError(KnockoffError, ValueError):
    """An option, model or dataset the user gave is unusable as given."""


class WrongTypeError(ConfigError, TypeError):
    """An option of the wrong kind (a number where a model is needed, say)."""


class FitError(ConfigError):
    """Two parts of a world do not fit each other (widths, image shapes, labels)."""


class DeviceError(ConfigError):
    """A device string torch does not know, or a device this machine does not have."""


class DamagedFileError(KnockoffError, ValueError):
    """A file that cannot be read as what it should be: damaged, truncated, or not the project's."""


class NotEvaluableError(ConfigError):
    """The victim's answers on the eval set cannot be had without a cost the user has not allowed
    (a remote victim: they would be paid queries). What needs no victim query is still measured."""
