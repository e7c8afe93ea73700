"""Jittered exponential backoff for the informer's retries after API and transport errors.

Defaults follow client-go's reflector: 0.8 s doubling to 30 s, with full jitter on top so that many
informers restarting together (after an API server restart) do not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays for consecutive failures: ``initial * factor**n`` times a random factor in
    ``[1, 1 + jitter)``, never more than ``maximum`` (the jitter included, so a long outage is
    retried at least every ``maximum`` seconds). ``reset()`` after a success starts again at ``initial``."""

    def __init__(self, initial: float = 0.8, maximum: float = 30.0, factor: float = 2.0,
                 jitter: float = 1.0, rand: Callable[[], float] = random.random) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or jitter < 0:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, jitter >= 0")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next(self) -> float:
        """The delay before the next try, counting one more failure."""
        base = min(self.maximum, self.initial * self.factor ** min(self._failures, 64))
        self._failures += 1
        return min(self.maximum, base * (1.0 + self.jitter * self._rand()))

    def reset(self) -> None:
        self._failures = 0
