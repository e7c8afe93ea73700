"""The Lua scripts behind every transition of the work queue, and the Redis error boundary.

Each queue operation is one script, so a key's dirty mark, its place in a ready list, its claim and
its deadline always change together, and each operation costs one round trip. The scripts route a
key to its shard themselves (:data:`~shard_operator.sharding.hashing.LUA_HRW` over the ring stored
in Redis), so a key is always pushed to the shard of the *current* ring without an epoch handshake.

Time is the caller's clock, passed in ``ARGV`` (never Redis ``TIME``), so tests step a fake clock.
Every script takes the key prefix (``Keys.prefix + ':'``) as ``ARGV[1]`` and names its keys from
it; ``KEYS[1]`` is the dirty hash, which only routes the call on Redis Cluster (one hash tag).
Numbers that may be fractional are returned as strings, because Redis truncates Lua numbers.

Invariant the scripts keep: a key sits in exactly one ready list (or the pending list) if and only
if it is dirty and not processing. A delayed key is neither until it is promoted.
"""

from __future__ import annotations

from shard_operator.sharding.hashing import LUA_HRW
from shard_operator.storage import redis_errors

__all__ = ["ADD", "ADD_AFTER", "DONE", "DONE_AND_GET", "GET", "LEN", "REAP", "RENEW", "redis_errors"]

_COMMON = LUA_HRW + """
local P = ARGV[1]
local RING = nil
local function enqueue(key)
  if RING == nil then RING = hrw_ring(redis.call('LRANGE', P .. 'ring', 0, -1)) end
  local shard = hrw_pick(RING, key)
  if not shard then redis.call('RPUSH', P .. 'pending', key) return end
  if redis.call('RPUSH', P .. 'ready:' .. shard, key) == 1 then
    local wake = P .. 'notify:' .. shard
    if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
  end
end
local function add(key, stamp)
  if redis.call('HSETNX', P .. 'dirty', key, stamp) == 0 then return 0 end
  if redis.call('HEXISTS', P .. 'processing', key) == 0 then enqueue(key) end
  return 1
end
local function release(key, token)
  if redis.call('HGET', P .. 'processing', key) ~= token then return 0 end
  redis.call('HDEL', P .. 'processing', key)
  redis.call('ZREM', P .. 'deadlines', key)
  if redis.call('HEXISTS', P .. 'dirty', key) == 1 then enqueue(key) end
  return 1
end
local function promote(now, limit)
  local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    redis.call('ZREM', P .. 'delayed', due[i])
    add(due[i], due[i + 1])
  end
end
local function nothing(code, wait)
  return {code, '', '', '', '', tostring(wait)}
end
local function idle(now, shard)
  redis.call('DEL', P .. 'notify:' .. shard)
  local first = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
  if #first == 0 then return nothing(0, -1) end
  return nothing(0, math.max(0, tonumber(first[2]) - now))
end
-- {1, key, token, enqueued_at, deadline, ''} | {0, .., wait hint or -1} | {2, .., wait for a token}
local function take(now, shard, owner, ttl, qps, burst, limit)
  promote(now, limit)
  local list = P .. 'ready:' .. shard
  if redis.call('LLEN', list) == 0 then return idle(now, shard) end
  local tokens = nil
  if qps > 0 then
    local bucket = redis.call('HMGET', P .. 'bucket', 'tokens', 'stamp')
    local stamp = tonumber(bucket[2]) or now
    tokens = math.min(burst, (tonumber(bucket[1]) or burst) + math.max(0, now - stamp) * qps)
    -- The stamp is this caller's now, even when it is earlier than the stored one: a host whose clock
    -- ran ahead must not freeze the refill of every other host until their clocks catch up.
    redis.call('HSET', P .. 'bucket', 'tokens', tostring(tokens), 'stamp', tostring(now))
    if tokens < 1 then return nothing(2, (1 - tokens) / qps) end
  end
  while true do
    local key = redis.call('LPOP', list)
    if not key then break end
    local added = redis.call('HGET', P .. 'dirty', key)
    if added and redis.call('HEXISTS', P .. 'processing', key) == 0 then
      redis.call('HDEL', P .. 'dirty', key)
      local token = owner .. ':' .. redis.call('INCR', P .. 'seq')
      local deadline = now + ttl
      redis.call('HSET', P .. 'processing', key, token)
      redis.call('ZADD', P .. 'deadlines', tostring(deadline), key)
      if tokens then redis.call('HSET', P .. 'bucket', 'tokens', tostring(tokens - 1)) end
      if redis.call('LLEN', list) == 0 then redis.call('DEL', P .. 'notify:' .. shard) end
      return {1, key, token, added, tostring(deadline), ''}
    end
  end
  return idle(now, shard)
end
"""

# ARGV: prefix, now, key... -> how many keys became dirty.
ADD = _COMMON + """
local n = 0
for i = 3, #ARGV do n = n + add(ARGV[i], ARGV[2]) end
return n
"""

# ARGV: prefix, due, key -> 1 if scheduled or moved earlier, 0 if already due no later.
ADD_AFTER = _COMMON + """
local current = redis.call('ZSCORE', P .. 'delayed', ARGV[3])
if current and tonumber(current) <= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', P .. 'delayed', ARGV[2], ARGV[3])
return 1
"""

# ARGV: prefix, now, shard, owner, ttl, qps (0 = no bucket), burst, promote limit -> take's reply.
GET = _COMMON + """
return take(tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
            tonumber(ARGV[8]))
"""

# ARGV: prefix, key, token, forget -> 1 released, 0 the claim was lost (nothing changed).
# forget = '1' also clears the key's failure count, in the same round trip.
DONE = _COMMON + """
local released = release(ARGV[2], ARGV[3])
if released == 1 and ARGV[4] == '1' then redis.call('HDEL', P .. 'failures', ARGV[2]) end
return released
"""

# ARGV: prefix, key, token, now, shard, owner, ttl, qps, burst, limit, forget -> {-1} if the claim was lost,
# else take's. forget = '1' also clears the key's failure count (the success path's forget, in the same trip).
DONE_AND_GET = _COMMON + """
if release(ARGV[2], ARGV[3]) == 0 then return {-1} end
if ARGV[11] == '1' then redis.call('HDEL', P .. 'failures', ARGV[2]) end
return take(tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]),
            tonumber(ARGV[10]))
"""

# ARGV: prefix, key, token, new deadline -> 1 renewed, 0 lost.
RENEW = _COMMON + """
if redis.call('HGET', P .. 'processing', ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('ZADD', P .. 'deadlines', ARGV[4], ARGV[2])
return 1
"""

# ARGV: prefix, now, limit -> how many expired claims were dropped and their keys queued again.
REAP = _COMMON + """
local expired = redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, key in ipairs(expired) do
  redis.call('HDEL', P .. 'processing', key)
  redis.call('ZREM', P .. 'deadlines', key)
  redis.call('HSETNX', P .. 'dirty', key, ARGV[2])
  enqueue(key)
end
return #expired
"""

# ARGV: prefix, shard ('' = every shard of the ring plus pending) -> queued keys.
LEN = _COMMON + """
if ARGV[2] ~= '' then return redis.call('LLEN', P .. 'ready:' .. ARGV[2]) end
local n = redis.call('LLEN', P .. 'pending')
for _, shard in ipairs(redis.call('LRANGE', P .. 'ring', 0, -1)) do
  n = n + redis.call('LLEN', P .. 'ready:' .. shard)
end
return n
"""
