"""The sharded ingest's shared state in Redis, under the controller's keys: the published plan, the
members' heartbeats and the plan epoch each member has listed.

Where it sits: the leader calls :meth:`IngestRegistry.plan_tick` on every coordinator tick (it turns
the live members and their reports into the next :class:`~.plan.Plan` and publishes it when it
changed); every manager calls :meth:`IngestRegistry.member_tick` for its
:class:`~.member.IngestMember` (heartbeat, read the plan, apply it, report). A member that stops
beating drops out after ``member_ttl`` seconds, and its ranges go to the others at the next plan.
Heartbeats are stamped and compared with the Redis server's time, like the shard ring's.
"""

from __future__ import annotations

import redis

from shard_operator.clock import LUA_NOW, ManualClock, check_clock, script_time
from shard_operator.ingest.member import IngestMember
from shard_operator.ingest.plan import Plan, next_plan
from shard_operator.keys import QUEUE_TEMPLATES, Keys, lua_names
from shard_operator.queue.checks import check_seconds
from shard_operator.storage import redis_errors

__all__ = ["IngestRegistry"]

_COMMON = lua_names(QUEUE_TEMPLATES) + LUA_NOW

# ARGV: prefix, time, member -> nothing.
HEARTBEAT = _COMMON + """
redis.call('ZADD', K_ingest_members, num(clock_now()), ARGV[3])
"""

# ARGV: prefix, time, ttl -> the members seen within ttl seconds; forgets the others and their reports.
LIVE = _COMMON + """
local oldest = num(clock_now() - tonumber(ARGV[3]))
local gone = redis.call('ZRANGEBYSCORE', K_ingest_members, '-inf', '(' .. oldest)
for _, member in ipairs(gone) do
  redis.call('ZREM', K_ingest_members, member)
  redis.call('HDEL', K_ingest_synced, member)
end
return redis.call('ZRANGEBYSCORE', K_ingest_members, oldest, '+inf')
"""


class IngestRegistry:
    """Read and write the ingest state of ``keys``' controller. ``clock`` is for tests only."""

    def __init__(self, client: redis.Redis, keys: Keys, *, member_ttl: float = 10.0,
                 clock: ManualClock | None = None) -> None:
        self.client, self.keys = client, keys
        self.member_ttl = check_seconds("member_ttl", member_ttl)
        self.clock = check_clock(clock)
        with redis_errors():
            self._heartbeat = client.register_script(HEARTBEAT)
            self._live = client.register_script(LIVE)

    # -- members -------------------------------------------------------------------

    def heartbeat(self, member: str) -> None:
        """Record ``member`` as alive now (also joins)."""
        with redis_errors():
            self._heartbeat([self.keys.ingest_members], [self.keys.script_prefix, script_time(self.clock), member])

    def leave(self, member: str) -> None:
        """Remove ``member`` at once (graceful shutdown), its relist marker too; the next plan hands its
        ranges over."""
        with redis_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.keys.ingest_members, member)
            pipe.hdel(self.keys.ingest_synced, member)
            pipe.delete(self.keys.ingest_marker(member))
            pipe.execute()

    def report(self, member: str, epoch: int) -> None:
        """``member`` has listed every range of the plan of ``epoch``."""
        with redis_errors():
            self.client.hset(self.keys.ingest_synced, member, str(epoch))

    def live_members(self) -> list[str]:
        """The members seen within ``member_ttl`` seconds, sorted; forgets the others."""
        with redis_errors():
            ids = self._live([self.keys.ingest_members, self.keys.ingest_synced],
                             [self.keys.script_prefix, script_time(self.clock), repr(self.member_ttl)])
        return sorted(i.decode() if isinstance(i, bytes) else i for i in ids)

    def synced(self) -> dict[str, int]:
        with redis_errors():
            raw = self.client.hgetall(self.keys.ingest_synced)
        return {_text(member): int(epoch) for member, epoch in raw.items()}

    # -- the plan ------------------------------------------------------------------

    def plan(self) -> Plan | None:
        """The published plan, or None before the first."""
        with redis_errors():
            raw = self.client.get(self.keys.ingest_plan)
        return None if raw is None else Plan.from_json(raw)

    def plan_tick(self) -> Plan:
        """The leader's step: the next plan for the live members and their reports, published if it changed."""
        previous = self.plan()
        members = self.live_members()
        plan = next_plan(previous, members, self.synced())
        if plan != previous:
            with redis_errors():
                self.client.set(self.keys.ingest_plan, plan.to_json())
        return plan

    def member_tick(self, member: IngestMember) -> None:
        """A member's step: heartbeat, apply the published plan, report the epoch it has listed."""
        self.heartbeat(member.name)
        plan = self.plan()
        if plan is None:
            return
        member.apply(plan)
        if member.synced_epoch is not None:
            self.report(member.name, member.synced_epoch)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
