"""Checks that every number reaching a queue script is finite and in range, with a message naming it.

Redis does not roll back a script that fails halfway, and Lua turns a NaN or an infinity into a
score Redis refuses in the middle of a script; so the queue, its limiters and its bucket check each
number once, where it enters (constructors and delays), and raise :class:`ValueError` naming it.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["check_count", "check_seconds"]

#: A year: claim TTLs, delays and caps longer than this are mistakes, not policies.
MAX_SECONDS = 86_400.0 * 365


def check_seconds(name: str, value: float, *, allow_zero: bool = False, upper: float = MAX_SECONDS) -> float:
    """``value`` as a float if it is a finite number of seconds, > 0 (>= 0 with ``allow_zero``), <= ``upper``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value > upper:
        bound = (">= 0" if allow_zero else "> 0") + (f" and <= {upper:g}" if math.isfinite(upper) else "")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def check_count(name: str, value: int, *, minimum: int = 1) -> int:
    """``value`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
