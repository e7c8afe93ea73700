"""Shard membership: each worker's shard announces itself with a heartbeat in one Redis ZSET.

Where it sits: every worker process runs a :class:`Membership` for its shard and calls
``heartbeat`` more often than the assigner's ``member_ttl``; the assigner turns the live members
into the ring. A shard that stops beating drops out of the ring after ``member_ttl``. Heartbeats
are stamped, and compared, with the Redis server's time (:mod:`shard_operator.clock`).
"""

from __future__ import annotations

import redis

from shard_operator.clock import LUA_NOW, ManualClock, check_clock, script_time
from shard_operator.keys import QUEUE_TEMPLATES, Keys, lua_names, validate_shard_id
from shard_operator.queue.checks import check_seconds
from shard_operator.storage import redis_errors

__all__ = ["Membership", "live_members"]

_COMMON = lua_names(QUEUE_TEMPLATES) + LUA_NOW

# ARGV: prefix, time, shard -> nothing.
HEARTBEAT = _COMMON + """
redis.call('ZADD', K_members, num(clock_now()), ARGV[3])
"""

# ARGV: prefix, time, ttl -> the shards seen within ttl seconds.
LIVE = _COMMON + """
return redis.call('ZRANGEBYSCORE', K_members, num(clock_now() - tonumber(ARGV[3])), '+inf')
"""


class Membership:
    """One shard's presence: ``heartbeat()`` (also joins) records now as its last-seen time,
    ``leave()`` removes it at once (graceful shutdown). Joining or leaving takes effect in the
    ring at the assigner's next ``rebalance``. ``clock`` is for tests only."""

    def __init__(self, client: redis.Redis, keys: Keys, shard: str, *, clock: ManualClock | None = None) -> None:
        self.client, self.keys, self.shard = client, keys, validate_shard_id(shard)
        self.clock = check_clock(clock)
        with redis_errors():
            self._heartbeat = client.register_script(HEARTBEAT)

    def heartbeat(self) -> None:
        with redis_errors():
            self._heartbeat([self.keys.members], [self.keys.script_prefix, script_time(self.clock), self.shard])

    def leave(self) -> None:
        with redis_errors():
            self.client.zrem(self.keys.members, self.shard)


def live_members(client: redis.Redis, keys: Keys, ttl: float, *, clock: ManualClock | None = None) -> list[str]:
    """The shards seen within ``ttl`` seconds, sorted (a metric: live shards)."""
    args = [keys.script_prefix, script_time(check_clock(clock)), repr(check_seconds("member ttl", ttl))]
    with redis_errors():
        ids = client.eval(LIVE, 1, keys.members, *args)
    return sorted(i.decode() if isinstance(i, bytes) else i for i in ids)
