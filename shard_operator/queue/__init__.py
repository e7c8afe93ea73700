"""The Redis work queue: client-go's layered workqueue across processes and pods (DESIGN §5).

``WorkQueue`` (add / get / done / renew / reap_expired / shut_down) → ``DelayingQueue`` (+ add_after)
→ ``RateLimitingQueue`` (+ add_rate_limited / forget / num_requeues), with the retry policy a
separate ``RateLimiter`` and the global ``TokenBucket`` taken when a key is handed out.
"""

from shard_operator.clock import Clock, ManualClock, system_clock
from shard_operator.queue.delaying import DelayingQueue
from shard_operator.queue.limiters import ExponentialFailureRateLimiter, MaxOf, RateLimiter
from shard_operator.queue.rate_limiting import DEFAULT_BUCKET, RateLimitingQueue
from shard_operator.queue.workqueue import Item, TokenBucket, WorkQueue

__all__ = [
    "DEFAULT_BUCKET",
    "Clock",
    "DelayingQueue",
    "ExponentialFailureRateLimiter",
    "Item",
    "ManualClock",
    "MaxOf",
    "RateLimiter",
    "RateLimitingQueue",
    "TokenBucket",
    "WorkQueue",
    "system_clock",
]
