"""Checks on user-supplied numbers, so that a bad option is a clear error, not a crash in ``int()``."""
from __future__ import annotations

import math
import numbers


def is_integer(value) -> bool:
    """An integer, or an integral float; not a bool, NaN, infinity, text or None."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and int(value) == value)


def is_finite_number(value) -> bool:
    """A real number that is not NaN or infinite (bools and text are not numbers here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
