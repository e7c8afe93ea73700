"""The clock the queue and the ring read time from, injected so tests step time instead of sleeping.

Every process of a deployment must read the same wall clock (NTP-synchronised hosts): claim
deadlines, due times and the token bucket are compared across processes. What skew between hosts
does: due times (``add_after``, backoff) shift by the skew; the token bucket tolerates it (each call
refills from its own last stamp and never waits for a clock that ran ahead); claims do NOT: the
leader reaps with its clock the deadlines workers set with theirs, so a leader whose clock is ahead
by more than about ``claim_ttl - claim_ttl / 3`` (20 s with the defaults) can reap a claim that is
renewed on time and hand the key to a second worker (I1). Keep skew far below that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "system_clock"]

Clock = Callable[[], float]
"""Seconds since the epoch, as a float (``time.time``)."""

system_clock: Clock = time.time


class ManualClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``step(seconds)`` advances it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def step(self, seconds: float) -> float:
        """Advance by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock never goes back")
        with self._lock:
            self._now += seconds
            return self._now
