"""The delaying layer: client-go's ``DelayingInterface`` (``add_after``) over :class:`.WorkQueue`.

A delayed key waits in one ZSET scored by its due time. No process is dedicated to moving it:
every ``get`` first promotes up to ``promote_limit`` due keys (to their shards' ready lists), and an
idle ``get`` sleeps no longer than until the earliest due time, so a key is served soon after it
is due as long as any worker of any shard is polling.
"""

from __future__ import annotations

import math

from shard_operator.queue import scripts
from shard_operator.queue.checks import check_seconds
from shard_operator.queue.workqueue import WorkQueue

__all__ = ["DelayingQueue"]


class DelayingQueue(WorkQueue):
    """A :class:`WorkQueue` whose keys can also be added after a delay.

    ``add_after(key, delay)``: with ``delay == 0`` it is ``add(key)``; else the key becomes due at
    now (Redis time) + ``delay`` and is then added as by ``add`` (collapsing with any add made
    meanwhile). A key already waiting keeps the earlier of its two due times, as in client-go.
    Ignored after shut down. A negative, NaN or infinite delay raises ValueError.
    """

    def add_after(self, key: str, delay: float) -> bool:
        """Schedule ``key``; returns True if it was added now, scheduled, or moved to an earlier time."""
        if check_seconds("add_after delay", delay, allow_zero=True, upper=math.inf) == 0:
            return self.add(key)
        if self.shutting_down:
            return False
        with scripts.redis_errors():
            return bool(self._add_after(self._route, self._args(repr(float(delay)), key)))

    def num_delayed(self) -> int:
        """Keys waiting for their due time."""
        with scripts.redis_errors():
            return int(self.client.zcard(self.keys.delayed))
