"""The Redis work queue: client-go's layered workqueue across processes and pods (docs/design.md §2.5).

``WorkQueue`` (add / get / done / renew / reap_expired / shut_down) → ``DelayingQueue`` (+ add_after)
→ ``RateLimitingQueue`` (+ add_rate_limited / forget / num_requeues), with the retry policy a
separate ``RateLimiter`` and the global ``TokenBucket`` taken when a key is handed out. The queue
also owns the scripts that move keys between shards (``WorkQueue.rebalance``) and the slot table
that routes them (:mod:`.hashing`); time is the Redis server's (:mod:`shard_operator.clock`).
"""

from shard_operator.clock import ManualClock
from shard_operator.queue.delaying import DelayingQueue
from shard_operator.queue.limiters import ExponentialFailureRateLimiter, MaxOf, RateLimiter
from shard_operator.queue.rate_limiting import DEFAULT_BUCKET, RateLimitingQueue
from shard_operator.queue.workqueue import Item, Rebalance, TokenBucket, WorkQueue

__all__ = [
    "DEFAULT_BUCKET",
    "DelayingQueue",
    "ExponentialFailureRateLimiter",
    "Item",
    "ManualClock",
    "MaxOf",
    "RateLimiter",
    "RateLimitingQueue",
    "Rebalance",
    "TokenBucket",
    "WorkQueue",
]
