"""Making reconcile errors visible: a log record with the traceback, an Event, and the last error in Redis.

Where it sits: the worker loop (:mod:`.runner`) hands every failed reconcile whose claim it still holds
to an :class:`ErrorReporter`, and every success to :meth:`ErrorReporter.clear`. Operators see a failing key
three ways: an ERROR record with the traceback in the worker's log, a ``ReconcileError`` Warning Event on
the object (``kubectl describe``), and its last error in the hash ``<prefix>:errors`` that
``shard-operator status`` shows for each retrying key.

A 409 (``ConflictError``: the object changed since it was read) and a 429 (``TooManyRequestsError``) are the
expected ways an optimistic, throttled write fails; the key is retried and nobody has to act, so they are
one INFO line (no traceback, no Event), and still shown by ``status`` while the key retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shard_operator.errors import ClaimLost, ConflictError, TooManyRequestsError

if TYPE_CHECKING:
    import redis

    from shard_operator.context import Context, ObjectCache
    from shard_operator.source import Resource
    from shard_operator.worker.outcome import Decision

__all__ = ["ERROR_LIMIT", "EVENT_REASON", "ErrorReporter", "error_text"]

log = logging.getLogger(__name__)

#: The longest ``"ExcType: message"`` kept in the errors hash (what ``shard-operator status`` shows).
ERROR_LIMIT = 300
#: The reason of the Warning Event a failed reconcile records on its object.
EVENT_REASON = "ReconcileError"
_REMEMBERED = 10_000  # keys whose last traceback time is kept before the old ones are dropped
_EXPECTED = (ConflictError, TooManyRequestsError)  # retried as a matter of course: no traceback, no Event


def error_text(raised: BaseException | None) -> str:
    """``"ExcType: message"``, at most :data:`ERROR_LIMIT` characters."""
    if raised is None:
        return "InvalidResult: the reconciler returned neither None nor a Result"
    message = str(raised)
    text = f"{type(raised).__name__}: {message}" if message else type(raised).__name__
    return text[:ERROR_LIMIT]


class ErrorReporter:
    """Reports the failed reconciles of one worker.

    Contract: :meth:`report` logs at ERROR with the traceback and records a Warning Event (through the
    reconcile's fenced recorder) at most once per key per ``interval`` seconds (the repeats are one DEBUG
    line; the error metric counts them all; a 409 or 429 is one INFO line instead), and stores the error
    in ``errors_key`` unless it is terminal (a terminal error is not retried). :meth:`clear` removes a
    key's entry, with a round trip only when this reporter stored one. Failures to report are logged,
    never raised: reporting never changes an outcome.
    """

    def __init__(self, client: redis.Redis, errors_key: str, *, cache: ObjectCache, resource: Resource,
                 interval: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client, self.errors_key, self.interval = client, errors_key, interval
        self._cache, self._resource, self._monotonic = cache, resource, monotonic
        self._stored: set[str] = set()       # keys this reporter put in the errors hash
        self._logged: dict[str, float] = {}  # key -> monotonic time of its last traceback

    def report(self, key: str, decision: Decision, raised: BaseException | None, ctx: Context | None) -> None:
        text = error_text(raised)
        now = self._monotonic()
        last = self._logged.get(key)
        if isinstance(raised, _EXPECTED):
            log.info("reconcile of %s will be retried: %s", key, text)
        elif last is None or now - last >= self.interval:
            if len(self._logged) >= _REMEMBERED:
                self._logged = {k: t for k, t in self._logged.items() if now - t < self.interval}
            self._logged[key] = now
            log.error("reconcile of %s failed%s: %s", key, " terminally (not retried)" if decision.terminal
                      else "", text, exc_info=raised)
            self._record_event(key, text, ctx)
        else:
            log.debug("reconcile of %s failed again: %s", key, text)
        if decision.terminal:
            self.clear(key)
            return
        try:
            self.client.hset(self.errors_key, key, text)
            self._stored.add(key)
        except Exception as exc:
            log.warning("could not store the last error of %s: %s", key, exc)

    def clear(self, key: str) -> None:
        """Drop ``key``'s entry of the errors hash, if this reporter stored one (no round trip otherwise)."""
        if key not in self._stored:
            return
        try:
            self.client.hdel(self.errors_key, key)
            self._stored.discard(key)
        except Exception as exc:
            log.warning("could not clear the last error of %s: %s", key, exc)

    def _record_event(self, key: str, text: str, ctx: Context | None) -> None:
        if ctx is None:
            return  # the key named no object
        try:
            obj = self._cache.get(self._resource, key)
            if obj is not None:
                ctx.recorder.warning(obj, EVENT_REASON, text)
        except ClaimLost:
            pass  # the worker sees the lost claim next and writes nothing more
        except Exception as exc:
            log.debug("no %s event for %s: %s", EVENT_REASON, key, exc)
