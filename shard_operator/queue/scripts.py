"""The Lua scripts behind every transition of the work queue and its ring, and the Redis error boundary.

Each queue operation is one script, so a key's dirty mark, its place in a ready list, its claim and
its deadline always change together, and each operation costs one round trip. The scripts route a
key to its shard themselves: the key's slot (:data:`~shard_operator.queue.hashing.LUA_HRW`) and one
``HGET`` of the slot table stored in Redis, whatever the number of shards, so a key is always pushed
to the shard of the *current* ring without an epoch handshake. REBALANCE, SLOTS_STEP and
REBALANCE_STEP, which build the next ring's slot table, publish it with the ring, and move queued keys
between ready lists, are here too: every script that writes the lists is in this module, so the
invariant below is kept in one place.

Every script gets the key prefix (:attr:`Keys.script_prefix`) as ``ARGV[1]`` and names its keys
with the functions :func:`~shard_operator.keys.lua_names` generates from the Python templates
(``K_dirty``, ``K_ready(shard)``); ``KEYS[1]`` only routes the call on Redis Cluster. ``ARGV[2]`` is
the time source (:mod:`shard_operator.clock`): '' reads Redis ``TIME``, a test clock passes its time.
Times and other fractional numbers are returned as strings, because Redis truncates Lua numbers.

Invariant the scripts keep: a key sits in exactly one ready list (or the pending list) if and only
if it is dirty and not processing. A delayed key is neither until it is promoted.

No script scales with the whole keyspace (a script blocks every other Redis client): ADD takes a
chunk of keys per call, SLOTS_STEP builds the next slot table a bounded number of rendezvous scores
per call and publishes it with the ring in the call that completes it, REBALANCE_STEP moves queued
keys one chunk of one list at a time, RELEASE_OWNER walks the claims with an HSCAN cursor, and GET skips or moves a
bounded number of entries. The invariant holds between any two calls: a step pops entries off a
list's head only after pushing each, once, to the list of its shard under the current ring (or back
to the same list's tail); no step creates or drops an entry, or changes a dirty mark or a claim. Ring
and table change together in one call, so what ``enqueue`` and ``take`` route by is always one table. An
interrupted rebalance leaves keys in lists of their former shards, counted in K_rebalancing: the next
REBALANCE (or any REBALANCE_STEP) goes on, and GET moves such a key to its shard rather than handing
it out, so a worker never processes another shard's key.

Redis does not roll back a script that fails halfway, so each script writes in an order where a
command failing at any point leaves every key still queued (or still claimed): a key is pushed to
its list before it is marked dirty or released, and claimed (deadline, then processing) before it
leaves its list. What a failure can leave behind is harmless: a stale list entry (skipped when
popped) or a deadline without a claim (dropped when reaped).
"""

from __future__ import annotations

from shard_operator.clock import LUA_NOW
from shard_operator.keys import QUEUE_TEMPLATES, lua_names
from shard_operator.queue.hashing import LUA_HRW
from shard_operator.storage import redis_errors

__all__ = [
    "ADD", "ADD_AFTER", "BATCH", "DONE", "DONE_AND_GET", "GET", "LEN", "REAP", "REBALANCE", "REBALANCE_STEP",
    "RELEASE_OWNER",
    "RENEW", "SLOTS_STEP", "redis_errors",
]

_COMMON = LUA_HRW + lua_names(QUEUE_TEMPLATES) + LUA_NOW + """
local ROUTES = {}  -- slot -> shard (false: no live shard), read once per script call
local function route(key)
  local slot = slot_of(key)
  local shard = ROUTES[slot]
  if shard == nil then
    shard = redis.call('HGET', K_slots, slot_field(slot))  -- false when the ring is empty
    ROUTES[slot] = shard
  end
  return shard
end
local function enqueue(key)
  local shard = route(key)
  if not shard then redis.call('RPUSH', K_pending, key) return end
  if redis.call('RPUSH', K_ready(shard), key) == 1 then
    local wake = K_notify(shard)
    if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
  end
end
local function add(key, stamp)
  if redis.call('HEXISTS', K_dirty, key) == 1 then return 0 end
  if redis.call('HEXISTS', K_processing, key) == 0 then enqueue(key) end
  redis.call('HSET', K_dirty, key, stamp)
  return 1
end
local function forget(key, first)
  for i = first, #ARGV do redis.call('HDEL', ARGV[i], key) end
end
local function release(key, token)
  if redis.call('HGET', K_processing, key) ~= token then return 0 end
  if redis.call('HEXISTS', K_dirty, key) == 1 then enqueue(key) end
  redis.call('HDEL', K_processing, key)
  redis.call('ZREM', K_deadlines, key)
  return 1
end
local function promote(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K_delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    add(due[i], due[i + 1])
    redis.call('ZREM', K_delayed, due[i])
  end
end
local function nothing(code, wait)
  return {code, '', '', '', '', num(wait), ''}
end
local function idle(now, shard)
  redis.call('DEL', K_notify(shard))
  local first = redis.call('ZRANGE', K_delayed, 0, 0, 'WITHSCORES')
  if #first == 0 then return nothing(0, -1) end
  return nothing(0, math.max(0, tonumber(first[2]) - now))
end
-- {1, key, token, enqueued_at, deadline, '', now} | {0, .., wait hint or -1, ''} | {2, .., wait for a token, ''}
local function take(shard, owner, ttl, qps, burst, limit)
  local now = clock_now()
  promote(now, limit)
  local list = K_ready(shard)
  if redis.call('LLEN', list) == 0 then return idle(now, shard) end
  local tokens = nil
  if qps > 0 then
    local bucket = redis.call('HMGET', K_bucket, 'tokens', 'stamp')
    local stamp = tonumber(bucket[2]) or now
    tokens = math.min(burst, (tonumber(bucket[1]) or burst) + math.max(0, now - stamp) * qps)
    -- The stamp is now even when it is earlier than the stored one: if Redis's clock is set back,
    -- the bucket refills from the new time instead of freezing until the clock catches up.
    redis.call('HSET', K_bucket, 'tokens', num(tokens), 'stamp', num(now))
    if tokens < 1 then return nothing(2, (1 - tokens) / qps) end
  end
  local skipped = 0
  while true do
    local key = redis.call('LINDEX', list, 0)
    if not key then break end
    local added = redis.call('HGET', K_dirty, key)
    local queued = added and redis.call('HEXISTS', K_processing, key) == 0
    if queued then
      if route(key) ~= shard then
        -- The ring changed and the rebalance has not reached this entry yet: move it, never hand it out.
        enqueue(key)
        queued = false
      end
    end
    if queued then
      local token = owner .. ':' .. redis.call('INCR', K_seq)
      local deadline = num(now + ttl)
      redis.call('ZADD', K_deadlines, deadline, key)
      redis.call('HSET', K_processing, key, token)
      redis.call('LPOP', list)
      redis.call('HDEL', K_dirty, key)
      if tokens then redis.call('HSET', K_bucket, 'tokens', num(tokens - 1)) end
      if redis.call('LLEN', list) == 0 then redis.call('DEL', K_notify(shard)) end
      return {1, key, token, added, deadline, '', num(now)}
    end
    redis.call('LPOP', list)
    skipped = skipped + 1
    if skipped >= limit then return nothing(0, 0) end  -- bounded: the caller asks again at once
  end
  return idle(now, shard)
end
"""

# ARGV: prefix, time, shard, owner, ttl, qps (0 = no bucket), burst, promote limit, n, hash count h,
# h hashes, then (key, token, forget 0/1) per item to release -> {{released 1/0 per item}, {count, code,
# wait hint, now, deadline, key, token, enqueued_at, key, token, enqueued_at, ...}}. Releases each item as
# DONE does (forgetting it in the hashes when its flag is 1 and its claim was held), then claims up to
# ``n`` ready keys of the shard, each exactly as GET would (dedup, route check, claim with a deadline,
# the bucket's tokens: at most as many keys as whole tokens), in one script: a batch costs one call.
# code: 0 (nothing or claimed), 2 (the bucket is empty; wait is the time to the next token).
BATCH = _COMMON + """
local n, nhashes = tonumber(ARGV[9]), tonumber(ARGV[10])
local released = {}
for i = 11 + nhashes, #ARGV, 3 do
  local key, token = ARGV[i], ARGV[i + 1]
  local ok = release(key, token)
  if ok == 1 and ARGV[i + 2] == '1' then
    for h = 11, 10 + nhashes do redis.call('HDEL', ARGV[h], key) end
  end
  released[#released + 1] = ok
end
if n < 1 then return {released, {0, 0, '-1', '', ''}} end
local shard, owner, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5])
local qps, burst, limit = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = clock_now()
promote(now, limit)
local list = K_ready(shard)
local function none(code, wait) return {released, {0, code, num(wait), num(now), ''}} end
local function rest()  -- nothing to claim: idle's wait hint (the earliest delayed key, or -1)
  return {released, {0, 0, idle(now, shard)[6], num(now), ''}}
end
if redis.call('LLEN', list) == 0 then return rest() end
local tokens = nil
if qps > 0 then
  local bucket = redis.call('HMGET', K_bucket, 'tokens', 'stamp')
  local stamp = tonumber(bucket[2]) or now
  tokens = math.min(burst, (tonumber(bucket[1]) or burst) + math.max(0, now - stamp) * qps)
  redis.call('HSET', K_bucket, 'tokens', num(tokens), 'stamp', num(now))
  if tokens < 1 then return none(2, (1 - tokens) / qps) end
  n = math.min(n, math.floor(tokens))
end
local deadline = num(now + ttl)
local out = {0, 0, '0', num(now), deadline}
local got, skipped = 0, 0
while got < n do
  local key = redis.call('LINDEX', list, 0)
  if not key then break end
  local added = redis.call('HGET', K_dirty, key)
  local queued = added and redis.call('HEXISTS', K_processing, key) == 0
  if queued and route(key) ~= shard then
    enqueue(key)  -- the ring changed and the rebalance has not reached this entry yet: move it
    queued = false
  end
  if queued then
    local token = owner .. ':' .. redis.call('INCR', K_seq)
    redis.call('ZADD', K_deadlines, deadline, key)
    redis.call('HSET', K_processing, key, token)
    redis.call('LPOP', list)
    redis.call('HDEL', K_dirty, key)
    got = got + 1
    out[#out + 1], out[#out + 2], out[#out + 3] = key, token, added
  else
    redis.call('LPOP', list)
    skipped = skipped + 1
    if skipped >= limit then break end  -- bounded: the caller asks again at once
  end
end
if tokens and got > 0 then redis.call('HSET', K_bucket, 'tokens', num(tokens - got)) end
if redis.call('LLEN', list) == 0 then
  redis.call('DEL', K_notify(shard))
  if got == 0 and skipped < limit then return rest() end
end
out[1] = got
return {released, out}
"""

# ARGV: prefix, time, key... -> how many keys became dirty.
ADD = _COMMON + """
local n, now = 0, num(clock_now())
for i = 3, #ARGV do n = n + add(ARGV[i], now) end
return n
"""

# ARGV: prefix, time, delay, key -> 1 if scheduled or moved earlier, 0 if already due no later.
ADD_AFTER = _COMMON + """
local due = clock_now() + tonumber(ARGV[3])
local current = redis.call('ZSCORE', K_delayed, ARGV[4])
if current and tonumber(current) <= due then return 0 end
redis.call('ZADD', K_delayed, num(due), ARGV[4])
return 1
"""

# ARGV: prefix, time, shard, owner, ttl, qps (0 = no bucket), burst, promote limit -> take's reply.
GET = _COMMON + """
return take(ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
"""

# ARGV: prefix, time, key, token, hash... -> 1 released, 0 the claim was lost (nothing changed).
# Each hash named after the token loses the key's field: the rate limiter's forget, in the same trip.
DONE = _COMMON + """
local released = release(ARGV[3], ARGV[4])
if released == 1 then forget(ARGV[3], 5) end
return released
"""

# ARGV: prefix, time, key, token, shard, owner, ttl, qps, burst, limit, hash... -> {-1} if the claim was
# lost, else take's. The hashes are DONE's (the success path's forget, in the same trip).
DONE_AND_GET = _COMMON + """
if release(ARGV[3], ARGV[4]) == 0 then return {-1} end
forget(ARGV[3], 11)
return take(ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]))
"""

# ARGV: prefix, time, key, token, ttl -> the new deadline, or '' if the claim was lost.
RENEW = _COMMON + """
if redis.call('HGET', K_processing, ARGV[3]) ~= ARGV[4] then return '' end
local deadline = num(clock_now() + tonumber(ARGV[5]))
redis.call('ZADD', K_deadlines, deadline, ARGV[3])
return deadline
"""

# ARGV: prefix, time, limit -> how many expired claims were dropped and their keys queued again.
REAP = _COMMON + """
local now = clock_now()
local expired = redis.call('ZRANGEBYSCORE', K_deadlines, '-inf', '(' .. num(now), 'LIMIT', 0, tonumber(ARGV[3]))
local n = 0
for _, key in ipairs(expired) do
  if redis.call('HEXISTS', K_processing, key) == 1 then
    enqueue(key)
    redis.call('HSETNX', K_dirty, key, num(now))
    redis.call('HDEL', K_processing, key)
    n = n + 1
  end
  redis.call('ZREM', K_deadlines, key)
end
return n
"""

# ARGV: prefix, time, shard ('' = every shard of the ring plus pending) -> queued keys.
LEN = _COMMON + """
if ARGV[3] ~= '' then return redis.call('LLEN', K_ready(ARGV[3])) end
local n = redis.call('LLEN', K_pending)
local counted = {}
for _, shard in ipairs(redis.call('LRANGE', K_ring, 0, -1)) do
  counted[shard] = true
  n = n + redis.call('LLEN', K_ready(shard))
end
for _, shard in ipairs(redis.call('HKEYS', K_rebalancing)) do  -- lists a rebalance is still draining
  if shard ~= '' and not counted[shard] then n = n + redis.call('LLEN', K_ready(shard)) end
end
return n
"""

# Shared by the ring scripts. ``publish(live)`` makes ``live`` the ring together with the slot table
# built for it in K_slots_next (none for an empty ring), bumps the epoch, and records every list that
# may now hold keys of another shard in K_rebalancing (list -> entries to scan): the old ring's lists,
# lists an unfinished rebalance left, and the pending list once a shard lives. REBALANCE_STEP then
# moves those keys in bounded chunks. The table records the ring it was built for (field 'ring'), so
# the next build is computed against exactly that table whatever happened to K_ring.
_RING = _COMMON + """
local unpack = unpack or table.unpack  -- Lua 5.1 (Redis) or 5.4 (fakeredis)
local function scan(field)
  local list = field == '' and K_pending or K_ready(field)
  local n = redis.call('LLEN', list)
  if n > 0 then redis.call('HSET', K_rebalancing, field, n) else redis.call('HDEL', K_rebalancing, field) end
end
local function same_ids(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
local function publish(live)
  for _, field in ipairs(redis.call('HKEYS', K_rebalancing)) do scan(field) end
  for _, shard in ipairs(redis.call('LRANGE', K_ring, 0, -1)) do scan(shard) end
  if #live > 0 then
    redis.call('HSET', K_slots_next, 'ring', table.concat(live, ' '))
    redis.call('RENAME', K_slots_next, K_slots)
  else
    redis.call('DEL', K_slots, K_slots_next)
  end
  redis.call('DEL', K_ring)
  if #live > 0 then redis.call('RPUSH', K_ring, unpack(live)) end
  redis.call('DEL', K_ring_next)
  local epoch = redis.call('INCR', K_epoch)
  if #live > 0 and redis.call('HEXISTS', K_rebalancing, '') == 0 then scan('') end
  return epoch
end
"""

# ARGV: prefix, time, member ttl -> {epoch before, epoch after, 1 if a new ring's slot table is being
# built}. Prunes members whose heartbeat is older than the ttl; if the live ones differ from the ring
# (or from the ring being built), or the ring has no slot table (an upgrade from a version before slot
# tables), starts building the slot table of the live ones (K_ring_next;
# SLOTS_STEP builds it in chunks and publishes it). Until then every script routes by the current
# table, so ring and table change together, atomically. An empty live set is published at once.
REBALANCE = _RING + """
local now, ttl = clock_now(), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', K_members, '-inf', '(' .. num(now - ttl))
local live = redis.call('ZRANGE', K_members, 0, -1)
table.sort(live)
local ring = redis.call('LRANGE', K_ring, 0, -1)
local before = tonumber(redis.call('GET', K_epoch) or '0')
local epoch = before
local building = redis.call('EXISTS', K_ring_next) == 1
local target = building and redis.call('LRANGE', K_ring_next, 0, -1) or ring
if not same_ids(live, target) then
  redis.call('DEL', K_ring_next, K_slots_next)
  building = false
  if not same_ids(live, ring) then
    if #live == 0 then epoch = publish(live) else
      redis.call('RPUSH', K_ring_next, unpack(live))
      building = true
    end
  end
end
if not building and #live > 0 and redis.call('EXISTS', K_slots) == 0 then
  -- a live ring without its slot table (published by a version before slot tables): build it, or every
  -- key would be parked as pending until the membership changed
  redis.call('DEL', K_slots_next)
  redis.call('RPUSH', K_ring_next, unpack(live))
  building = true
end
if redis.call('EXISTS', K_slots) == 1 and redis.call('HEXISTS', K_rebalancing, '') == 0 then scan('') end
return {before, epoch, building and 1 or 0}
"""

# ARGV: prefix, time, budget -> {slots left to build (0: none), the new epoch if this call published
# it else 0, slots built by this call}. Builds the next chunk of K_slots_next (in slot order: its length
# is the cursor) for the ring in K_ring_next, computing about ``budget`` rendezvous scores at most
# (at least one slot), at most 1024 slots; the call that completes it publishes it. A slot whose shard
# under the current table is still live keeps it unless a joining shard outscores it (1 + joined
# scores); any other slot is picked over the whole new ring. Both give exactly the rendezvous winner,
# so the table equals a full rebuild's.
SLOTS_STEP = _RING + """
if redis.call('EXISTS', K_ring_next) == 0 then return {0, 0, 0} end
local target = redis.call('LRANGE', K_ring_next, 0, -1)
local start = redis.call('HLEN', K_slots_next)
local ring = hrw_ring(target)
local entry, was, added = {}, {}, {}
for _, e in ipairs(ring) do entry[e[1]] = e end
local recorded = redis.call('HGET', K_slots, 'ring')
if recorded then for id in string.gmatch(recorded, '%S+') do was[id] = true end end
for _, e in ipairs(ring) do if not was[e[1]] then added[#added + 1] = e end end
local budget = tonumber(ARGV[3])
local per_slot = (#ring == 1 and 1) or (recorded and #added + 1) or #ring
local count = math.min(SLOTS - start, 1024, math.max(1, math.floor(budget / per_slot)))
local fields, out, work = {}, {}, 0
for i = 1, count do fields[i] = slot_field(start + i - 1) end
local owners = (recorded and count > 0) and redis.call('HMGET', K_slots, unpack(fields)) or {}
for i = 1, count do
  local slot, owner, best = start + i - 1, owners[i], nil
  if #ring == 1 then
    best = target[1]
    work = work + 1
  elseif owner and entry[owner] then
    best = owner
    if #added > 0 then
      local best_score = hrw_score(entry[owner], slot)
      for _, e in ipairs(added) do
        local sc = hrw_score(e, slot)
        if sc > best_score or (sc == best_score and e[1] > best) then best, best_score = e[1], sc end
      end
    end
    work = work + 1 + #added
  else
    best = hrw_pick(ring, slot)
    work = work + #ring
  end
  out[#out + 1] = fields[i]
  out[#out + 1] = best
  if work >= budget then break end
end
for first = 1, #out, 2048 do  -- at most 2048 arguments per command: Lua 5.1's unpack stops near 8000
  redis.call('HSET', K_slots_next, unpack(out, first, math.min(first + 2047, #out)))
end
local built = start + math.floor(#out / 2)
if built < SLOTS then return {SLOTS - built, 0, built - start} end
return {0, publish(target), built - start}
"""

# ARGV: prefix, time, chunk -> {moved keys, lists left to scan}. Scans up to ``chunk`` entries from the
# head of one list recorded in K_rebalancing: each entry is pushed to the list of its shard under the
# current ring, or back to its own list's tail if it belongs there, before the chunk is trimmed off,
# so a failure halfway duplicates entries (skipped when popped), never drops one, and the list's
# count is decremented only after its chunk was moved: the next step redoes it.
REBALANCE_STEP = _COMMON + """
local unpack = unpack or table.unpack
local field = redis.call('HKEYS', K_rebalancing)[1]
if not field then return {0, 0} end
local list = field == '' and K_pending or K_ready(field)
local remaining = tonumber(redis.call('HGET', K_rebalancing, field))
local n = math.min(tonumber(ARGV[3]), remaining, redis.call('LLEN', list))
local keys = n > 0 and redis.call('LRANGE', list, 0, n - 1) or {}
local keep, out, order, moved = {}, {}, {}, 0
for _, key in ipairs(keys) do
  local dest = route(key) or ''  -- '': no live shard, the pending list
  if dest == field then keep[#keep + 1] = key else
    if not out[dest] then out[dest] = {} order[#order + 1] = dest end
    table.insert(out[dest], key)
    moved = moved + 1
  end
end
for _, dest in ipairs(order) do
  if dest == '' then redis.call('RPUSH', K_pending, unpack(out[dest])) else
    redis.call('RPUSH', K_ready(dest), unpack(out[dest]))
    local wake = K_notify(dest)
    if redis.call('LLEN', wake) == 0 then redis.call('RPUSH', wake, '1') end
  end
end
if #keep > 0 then redis.call('RPUSH', list, unpack(keep)) end
if n > 0 then redis.call('LTRIM', list, n, -1) end
if n == 0 or remaining <= n then redis.call('HDEL', K_rebalancing, field)
else redis.call('HSET', K_rebalancing, field, remaining - n) end
return {moved, redis.call('HLEN', K_rebalancing)}
"""

# ARGV: prefix, time, owner, cursor, count -> {next cursor, released}. One HSCAN step over the claims:
# each claim whose token starts with ``owner:`` is dropped and its key queued again to its current
# shard (marked dirty with the time now unless it already was), in REAP's failure-safe order. Only for
# an owner whose process exited: releasing a live worker's claims lets a second worker take its key.
RELEASE_OWNER = _COMMON + """
local now = num(clock_now())
local prefix = ARGV[3] .. ':'
local reply = redis.call('HSCAN', K_processing, ARGV[4], 'COUNT', tonumber(ARGV[5]))
local pairs_, n = reply[2], 0
for i = 1, #pairs_, 2 do
  local key, token = pairs_[i], pairs_[i + 1]
  if string.sub(token, 1, #prefix) == prefix then
    enqueue(key)
    redis.call('HSETNX', K_dirty, key, now)
    redis.call('HDEL', K_processing, key)
    redis.call('ZREM', K_deadlines, key)
    n = n + 1
  end
end
return {reply[1], n}
"""
