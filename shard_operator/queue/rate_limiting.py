"""The rate-limiting layer: client-go's ``RateLimitingInterface`` over :class:`.DelayingQueue`.

This is the queue a controller uses: the worker's outcome switch (``shard_operator.worker``) calls
``add_rate_limited`` on an error (with ``at_least`` for a ``TemporaryError(delay)`` or a 429's
Retry-After), ``done(item, forget=True)`` on success and ``add_after`` for ``requeue_after``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis

from shard_operator.clock import ManualClock
from shard_operator.errors import ShutDownError
from shard_operator.keys import Keys
from shard_operator.queue.checks import check_seconds
from shard_operator.queue.delaying import DelayingQueue
from shard_operator.queue.limiters import ExponentialFailureRateLimiter, RateLimiter
from shard_operator.queue.workqueue import Item, TokenBucket

__all__ = ["DEFAULT_BUCKET", "RateLimitingQueue"]

DEFAULT_BUCKET = TokenBucket(qps=10.0, burst=100)


class RateLimitingQueue(DelayingQueue):
    """A :class:`DelayingQueue` with a retry policy and, by default, client-go's global rate limit.

    - ``add_rate_limited(key, at_least=0)``: record one more failure of ``key`` and queue it again
      after the longer of its backoff (``rate_limiter.when(key)``) and ``at_least`` seconds (a
      delay the reconciler or the API server asked for); returns that delay. Together with the
      token bucket taken at hand-out, a failing key waits for the longer of its own backoff and
      the global limit.
    - ``forget(key)``: reset the key's failures (it does not remove the key).
    - ``done(item, forget=True)``: release the claim and, only if it was still held, forget the
      key's failures; in the same round trip when the limiter's state is Redis hashes of this
      queue (:meth:`RateLimiter.state_hashes`), else through ``rate_limiter.forget`` just after.
    - ``num_requeues(key)``: failures since the last ``forget``.

    ``rate_limiter`` defaults to :class:`ExponentialFailureRateLimiter` (5 ms * 2**n, cap 1000 s);
    ``bucket`` defaults to 10 keys/s with a burst of 100 across all processes; pass ``None`` (or
    ``TokenBucket(qps=None)``) to hand keys out unthrottled.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, rate_limiter: RateLimiter | None = None,
                 bucket: TokenBucket | None = DEFAULT_BUCKET, claim_ttl: float = 30.0,
                 clock: ManualClock | None = None, max_wait: float = 0.25, promote_limit: int = 100) -> None:
        super().__init__(client, keys, claim_ttl=claim_ttl, bucket=bucket, clock=clock, max_wait=max_wait,
                         promote_limit=promote_limit)
        self.rate_limiter = rate_limiter if rate_limiter is not None else ExponentialFailureRateLimiter(client, keys)

    def add_rate_limited(self, key: str, *, at_least: float = 0.0) -> float:
        """Queue ``key`` again after max(its backoff, ``at_least``); returns the delay (``workqueue_retries_total``)."""
        floor = check_seconds("at_least", at_least, allow_zero=True, upper=math.inf)
        delay = max(self.rate_limiter.when(key), floor)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.rate_limiter.num_requeues(key)

    def done(self, item: Item, *, forget: bool = False) -> None:
        """Release the claim; ``forget=True`` also resets the key's failures if the claim was held."""
        in_script = self._hashes_to_forget() if forget else ()
        self._release(item, in_script or ())
        if forget and in_script is None:
            self.rate_limiter.forget(item.key)

    def done_and_get(self, item: Item, timeout: float | None = 0.0, *, forget: bool = False) -> Item | None:
        """``done(item, forget=forget)`` then ``get(item.shard, item.owner, timeout)``, the first try in one trip."""
        in_script = self._hashes_to_forget() if forget else ()
        if forget and in_script is None:
            try:
                following = self._release_and_get(item, 0, ())
            except ShutDownError:  # released all the same
                self.rate_limiter.forget(item.key)
                raise
            self.rate_limiter.forget(item.key)
            if following is not None or timeout == 0:
                return following
            return self.get(item.shard, item.owner, timeout)
        return self._release_and_get(item, timeout, in_script or ())

    def done_batch(self, items: Sequence[Item], *, forget: Sequence[bool] | bool = False) -> list[bool]:
        """Release every item in one trip; ``forget`` (one flag, or one per item) also resets the failures
        of each flagged key whose claim was held. Returns per item whether its claim was held."""
        return self.done_batch_and_claim(items, "", "", 0, forget=forget)[0]

    def done_batch_and_claim(self, items: Sequence[Item], shard: str, owner: str, n: int,
                             timeout: float | None = 0.0, *,
                             forget: Sequence[bool] | bool = False) -> tuple[list[bool], list[Item]]:
        """``done_batch(items, forget=forget)`` then ``claim_batch(shard, owner, n, timeout)``, one trip
        when the limiter's state is Redis hashes of this queue (else its ``forget`` follows per key)."""
        flags = [forget] * len(items) if isinstance(forget, bool) else list(forget)
        if len(flags) != len(items):
            raise ValueError("forget needs one flag per item")
        if n > 0 and self.shutting_down:
            self.done_batch(items, forget=flags)
            raise ShutDownError("the work queue is shut down")
        in_script = self._hashes_to_forget() if any(flags) else ()
        released, claimed = self._batch_and_claim(items, flags, in_script or (), shard, owner, n, timeout)
        if in_script is None:
            for item, flag, held in zip(items, flags, released, strict=True):
                if flag and held:
                    self.rate_limiter.forget(item.key)
        return released, claimed

    def _hashes_to_forget(self) -> tuple[str, ...] | None:
        """The hashes the release script clears for a forget, or None if only ``rate_limiter.forget`` can."""
        hashes = self.rate_limiter.state_hashes()
        if hashes is None or not all(name.startswith(self.keys.script_prefix) for name in hashes):
            return None  # elsewhere, or under another hash tag than the script's keys
        return hashes
