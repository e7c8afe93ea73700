"""Restart policy shared by the process pools (worker processes, job workers): a child that dies is
started again after a backoff that doubles with each quick death and resets after a stable run, so a
crashing child never becomes a hot fork loop (I4) and a healthy one comes back at once (I5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["RestartPolicy", "Restartable"]


class Restartable(Protocol):
    """The bookkeeping fields a pool keeps per child (``next_start`` 0.0: no restart scheduled)."""

    started_at: float
    restarts: int
    next_start: float


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff doubles from ``backoff`` up to ``max_backoff`` (or ``backoff`` if larger); a child that
    ran ``stable_after`` seconds restarts at once and its count starts over."""

    backoff: float = 1.0
    max_backoff: float = 30.0
    stable_after: float = 60.0

    def __post_init__(self) -> None:
        if self.backoff <= 0 or self.stable_after <= 0:
            raise ValueError("restart backoff and stable_after must be > 0")

    def schedule(self, slot: Restartable, now: float) -> float:
        """Record that ``slot``'s child died at ``now``; set and return the delay before its restart."""
        slot.restarts = 0 if now - slot.started_at >= self.stable_after else slot.restarts + 1
        cap = max(self.max_backoff, self.backoff)
        delay = 0.0 if slot.restarts == 0 else min(self.backoff * 2 ** (slot.restarts - 1), cap)
        slot.next_start = now + delay
        return delay
