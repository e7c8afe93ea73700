"""Shard membership: each worker's shard announces itself with a heartbeat in one Redis ZSET.

Where it sits: every worker process runs a :class:`Membership` for its shard and calls
``heartbeat`` more often than the assigner's ``member_ttl``; the assigner turns the live members
into the ring. A shard that stops beating drops out of the ring after ``member_ttl``.
"""

from __future__ import annotations

import redis

from shard_operator.clock import Clock, system_clock
from shard_operator.keys import Keys, validate_shard_id
from shard_operator.storage import redis_errors

__all__ = ["Membership", "live_members"]


class Membership:
    """One shard's presence: ``heartbeat()`` (also joins) records now as its last-seen time,
    ``leave()`` removes it at once (graceful shutdown). Joining or leaving takes effect in the
    ring at the assigner's next ``rebalance``."""

    def __init__(self, client: redis.Redis, keys: Keys, shard: str, *, clock: Clock = system_clock) -> None:
        self.client, self.keys, self.shard, self.clock = client, keys, validate_shard_id(shard), clock

    def heartbeat(self) -> None:
        with redis_errors():
            self.client.zadd(self.keys.members, {self.shard: self.clock()})

    def leave(self) -> None:
        with redis_errors():
            self.client.zrem(self.keys.members, self.shard)


def live_members(client: redis.Redis, keys: Keys, ttl: float, *, clock: Clock = system_clock) -> list[str]:
    """The shards seen within ``ttl`` seconds, sorted (a metric: live shards)."""
    with redis_errors():
        ids = client.zrangebyscore(keys.members, clock() - ttl, "+inf")
    return sorted(i.decode() if isinstance(i, bytes) else i for i in ids)
