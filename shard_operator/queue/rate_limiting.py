"""The rate-limiting layer: client-go's ``RateLimitingInterface`` over :class:`.DelayingQueue`.

This is the queue a controller uses: the worker's outcome switch (``shard_operator.worker``) calls
``add_rate_limited`` on an error, ``forget`` on success and ``add_after`` for ``requeue_after``.
"""

from __future__ import annotations

import redis

from shard_operator.clock import Clock, system_clock
from shard_operator.keys import Keys
from shard_operator.queue.delaying import DelayingQueue
from shard_operator.queue.limiters import ExponentialFailureRateLimiter, RateLimiter
from shard_operator.queue.workqueue import Item, TokenBucket

__all__ = ["DEFAULT_BUCKET", "RateLimitingQueue"]

DEFAULT_BUCKET = TokenBucket(qps=10.0, burst=100)


class RateLimitingQueue(DelayingQueue):
    """A :class:`DelayingQueue` with a retry policy and, by default, client-go's global rate limit.

    - ``add_rate_limited(key)``: ``add_after(key, rate_limiter.when(key))``; returns the delay.
      Together with the token bucket taken at hand-out, a failing key waits for the longer of its
      own backoff and the global limit.
    - ``forget(key)``: reset the key's failures (call it on success; it does not remove the key).
    - ``num_requeues(key)``: failures since the last ``forget``.

    ``rate_limiter`` defaults to :class:`ExponentialFailureRateLimiter` (5 ms * 2**n, cap 1000 s);
    ``bucket`` defaults to 10 keys/s with a burst of 100 across all processes; pass ``None`` (or
    ``TokenBucket(qps=None)``) to hand keys out unthrottled.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, rate_limiter: RateLimiter | None = None,
                 bucket: TokenBucket | None = DEFAULT_BUCKET, claim_ttl: float = 30.0,
                 clock: Clock = system_clock, max_wait: float = 0.25, promote_limit: int = 100) -> None:
        super().__init__(client, keys, claim_ttl=claim_ttl, bucket=bucket, clock=clock, max_wait=max_wait,
                         promote_limit=promote_limit)
        self.rate_limiter = rate_limiter if rate_limiter is not None else ExponentialFailureRateLimiter(client, keys)

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` again after the rate limiter's delay; returns that delay (``workqueue_retries_total``)."""
        delay = self.rate_limiter.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self.rate_limiter.forget(key)

    def done(self, item: Item, *, forget: bool = False) -> None:
        """Release the claim; ``forget=True`` resets the key's failures too (in the same trip when it can)."""
        super().done(item, forget=self._forget_in_script(item.key, forget))

    def done_and_get(self, item: Item, timeout: float | None = 0.0, *, forget: bool = False) -> Item | None:
        return super().done_and_get(item, timeout, forget=self._forget_in_script(item.key, forget))

    def _forget_in_script(self, key: str, forget: bool) -> bool:
        """True if the queue script can clear the failures itself; else forget through the limiter now."""
        if not forget:
            return False
        limiter = self.rate_limiter
        if isinstance(limiter, ExponentialFailureRateLimiter) and limiter.keys == self.keys:
            return True
        limiter.forget(key)
        return False

    def num_requeues(self, key: str) -> int:
        return self.rate_limiter.num_requeues(key)
