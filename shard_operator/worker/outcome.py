"""The single outcome switch: one function maps what a reconcile returned or raised to what the
queue does with the key (docs/design.md §2.7). Every worker, thread or process, goes through it.

A 429 (:class:`~shard_operator.errors.TooManyRequestsError`) that escapes a reconcile is retried after the
server's ``Retry-After`` (but never sooner than the key's own backoff), like ``TemporaryError(delay)``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shard_operator.errors import TemporaryError, TerminalError, TooManyRequestsError
from shard_operator.reconcile import Result

__all__ = ["Action", "Decision", "decide"]


class Action(StrEnum):
    """What happens to the key before its claim is released."""

    FORGET = "forget"                    # success: reset the key's failures
    REQUEUE_AFTER = "requeue_after"      # forget, then add after ``delay`` seconds
    RATE_LIMITED = "rate_limited"        # add with the rate limiter's backoff
    RETRY_AFTER = "retry_after"          # add after at least ``delay`` s, failures kept (TemporaryError(delay), 429)
    DEFER = "defer"                      # not reconciled (the cache is not ready): add after ``delay`` s, failures kept


@dataclass(frozen=True, slots=True)
class Decision:
    """The queue action plus the metric labels: ``result`` is controller-runtime's result label."""

    action: Action
    result: str                 # "success" | "requeue" | "requeue_after" | "error" (DEFER: counted nowhere)
    delay: float = 0.0
    error: bool = False
    terminal: bool = False


def decide(returned: Result | None = None, raised: BaseException | None = None) -> Decision:
    """Map a reconcile's return value or exception to a :class:`Decision`; never raises."""
    if raised is not None:
        if isinstance(raised, TerminalError):
            return Decision(Action.FORGET, "error", error=True, terminal=True)
        if isinstance(raised, TemporaryError) and raised.delay is not None:
            return Decision(Action.RETRY_AFTER, "error", delay=raised.delay, error=True)
        if isinstance(raised, TooManyRequestsError) and raised.retry_after is not None:
            return Decision(Action.RETRY_AFTER, "error", delay=max(0.0, raised.retry_after), error=True)
        return Decision(Action.RATE_LIMITED, "error", error=True)
    if returned is None:
        return Decision(Action.FORGET, "success")
    if not isinstance(returned, Result):
        # A reconciler that returns something else is a programming error; retry with backoff, loudly.
        return Decision(Action.RATE_LIMITED, "error", error=True)
    if returned.requeue_after is not None and returned.requeue_after > 0:
        return Decision(Action.REQUEUE_AFTER, "requeue_after", delay=returned.requeue_after)
    if returned.requeue:
        return Decision(Action.RATE_LIMITED, "requeue")
    return Decision(Action.FORGET, "success")
