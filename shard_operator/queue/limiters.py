"""Retry policies: client-go's ``RateLimiter`` (``when`` / ``forget`` / ``num_requeues``) with state in Redis.

A rate limiter decides how long a failing key waits before it is queued again. The per-key failure
counts live in Redis, so every worker of every pod sees the same backoff for a key. Limiters
compose with :class:`MaxOf`. The global token bucket is not a limiter here: it is taken when a key
is handed out (:class:`~shard_operator.queue.workqueue.TokenBucket`), not reserved when it is added.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import redis

from shard_operator.keys import Keys
from shard_operator.queue import scripts
from shard_operator.queue.checks import check_seconds

__all__ = ["ExponentialFailureRateLimiter", "MaxOf", "RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """How long a key waits before its next retry.

    - ``when(key)``: record one more failure of ``key`` and return the delay in seconds (>= 0).
    - ``forget(key)``: the key succeeded (or is gone): reset its failures.
    - ``num_requeues(key)``: failures recorded since the last ``forget``.
    - ``state_hashes()``: the Redis hashes (in the queue's hash tag) that hold *all* of this limiter's
      state, one field per key, so deleting the key's field in each is exactly ``forget(key)``; the
      queue's ``done(item, forget=True)`` then forgets inside its own script, in the same round trip.
      ``None`` when the state lives elsewhere: the queue calls ``forget(key)`` after the release.
    """

    def when(self, key: str) -> float: ...

    def forget(self, key: str) -> None: ...

    def num_requeues(self, key: str) -> int: ...

    def state_hashes(self) -> tuple[str, ...] | None: ...


class ExponentialFailureRateLimiter:
    """``base * 2**failures``, capped at ``cap`` seconds; client-go's default is 5 ms and 1000 s.

    Failures are counted per key in the ``failures`` hash of ``keys``, shared by all processes;
    ``when`` is one ``HINCRBY`` round trip.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, base: float = 0.005, cap: float = 1000.0) -> None:
        base, cap = check_seconds("backoff base", base), check_seconds("backoff cap", cap)
        if cap < base:
            raise ValueError(f"backoff cap ({cap!r}) must be >= its base ({base!r})")
        self.client, self.keys, self.base, self.cap = client, keys, base, cap

    def when(self, key: str) -> float:
        with scripts.redis_errors():
            failures = int(self.client.hincrby(self.keys.failures, key, 1)) - 1
        if failures >= 1024:  # 2**1024 overflows a float; the cap was reached long before
            return self.cap
        return min(self.base * 2.0**failures, self.cap)

    def forget(self, key: str) -> None:
        with scripts.redis_errors():
            self.client.hdel(self.keys.failures, key)

    def num_requeues(self, key: str) -> int:
        with scripts.redis_errors():
            value = self.client.hget(self.keys.failures, key)
        return int(value) if value is not None else 0

    def state_hashes(self) -> tuple[str, ...]:
        return (self.keys.failures,)


class MaxOf:
    """The longest delay of several limiters; ``forget`` forgets in all, ``num_requeues`` is the max."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOf needs at least one rate limiter")
        self.limiters = limiters

    def when(self, key: str) -> float:
        return max(limiter.when(key) for limiter in self.limiters)

    def forget(self, key: str) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)

    def state_hashes(self) -> tuple[str, ...] | None:
        """The union of the limiters' hashes, or None if any one keeps its state elsewhere."""
        hashes: list[str] = []
        for limiter in self.limiters:
            own = limiter.state_hashes()
            if own is None:
                return None
            hashes += [name for name in own if name not in hashes]
        return tuple(hashes)
