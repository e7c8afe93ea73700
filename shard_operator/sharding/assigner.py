"""The assigner turns live members into the ring and moves queued keys to their new shards.

Where it sits: one designated process (the leader, once leader election exists) calls
``rebalance`` every second or so. One Lua script prunes members whose heartbeat is older than
``member_ttl``, and if the sorted live ids differ from the ring it publishes them with the next
epoch and moves every *queued* key (ready list or pending) whose shard changed to the ready list
of its new shard. Keys being processed are in no list, so they are never dispatched again before
their ``done`` or claim expiry, which then push them to the shard of the ring current at that time.
"""

from __future__ import annotations

from typing import NamedTuple

import redis

from shard_operator.clock import Clock, system_clock
from shard_operator.keys import Keys
from shard_operator.sharding.hashing import LUA_HRW
from shard_operator.storage import redis_errors

__all__ = ["Assigner", "Rebalance"]

# ARGV: prefix, now, member ttl -> {epoch, moved keys, 1 if the ring changed}.
REBALANCE = LUA_HRW + """
local unpack = unpack or table.unpack  -- Lua 5.1 (Redis) or 5.4 (fakeredis)
local P, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', P .. 'members', '-inf', '(' .. tostring(now - ttl))
local live = redis.call('ZRANGE', P .. 'members', 0, -1)
table.sort(live)
local old = redis.call('LRANGE', P .. 'ring', 0, -1)
local epoch = tonumber(redis.call('GET', P .. 'epoch') or '0')
local same = #old == #live
if same then for i = 1, #old do if old[i] ~= live[i] then same = false break end end end
local function push(list, keys)
  for i = 1, #keys, 1000 do redis.call('RPUSH', list, unpack(keys, i, math.min(i + 999, #keys))) end
end
if not same then
  redis.call('DEL', P .. 'ring')
  push(P .. 'ring', live)
  epoch = redis.call('INCR', P .. 'epoch')
end
local ring, moved = hrw_ring(live), 0
local function redistribute(list, own)
  local keys = redis.call('LRANGE', list, 0, -1)
  local keep, out, order = {}, {}, {}
  for _, key in ipairs(keys) do
    local shard = hrw_pick(ring, key)
    if shard == own then keep[#keep + 1] = key else
      local dest = shard or ''
      if not out[dest] then out[dest] = {} order[#order + 1] = dest end
      table.insert(out[dest], key)
      moved = moved + 1
    end
  end
  if #keep == #keys then return end
  redis.call('DEL', list)
  push(list, keep)
  for _, dest in ipairs(order) do
    if dest == '' then push(P .. 'pending', out[dest]) else
      push(P .. 'ready:' .. dest, out[dest])
      local wake = P .. 'notify:' .. dest
      if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
    end
  end
end
if not same then
  for _, shard in ipairs(old) do redistribute(P .. 'ready:' .. shard, shard) end
end
if #live > 0 then redistribute(P .. 'pending', nil) end
return {epoch, moved, same and 0 or 1}
"""


class Rebalance(NamedTuple):
    """What one ``rebalance`` did: the ring's epoch after it and how many queued keys moved shard."""

    epoch: int
    moved: int
    changed: bool


class Assigner:
    """Publishes the ring of live shards and keeps queued keys on the shard the ring assigns them.

    Contract of ``rebalance()``: atomic; idempotent (a second call with the same members changes
    nothing and returns the same epoch); bumps the epoch exactly when the live set changed; never
    touches a key being processed; with no live shard, queued keys wait in the pending list and
    move to shards when one joins. Run it in one process; two concurrent runs are still safe.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, member_ttl: float = 10.0,
                 clock: Clock = system_clock) -> None:
        if member_ttl <= 0:
            raise ValueError("member_ttl must be > 0")
        self.client, self.keys, self.member_ttl, self.clock = client, keys, member_ttl, clock
        with redis_errors():
            self._rebalance = client.register_script(REBALANCE)

    def rebalance(self) -> Rebalance:
        with redis_errors():
            epoch, moved, changed = self._rebalance(
                [self.keys.members], [self.keys.prefix + ":", repr(self.clock()), repr(self.member_ttl)])
        return Rebalance(int(epoch), int(moved), bool(changed))
