"""The Lua scripts that keep the cache and its indexes consistent, and the Redis error boundary.

Each write of the cache (:mod:`.writer`) is one script, so an object, its resourceVersion and its
namespace and owner index entries change together, and a write carrying an older resourceVersion
than the stored one is refused atomically. resourceVersions are compared as non-negative decimal
integers of any length (longer is larger, then lexicographic), which is exact where Lua's doubles
would not be past 2^53. No script walks the whole keyspace: a relist removes stale keys in
cursor steps (REPLACE_STEP), so Redis serves other clients between them. Every script gets the
kind's prefix (:func:`~shard_operator.keys.kind_prefix`) as ``ARGV[1]`` and names its keys with the
functions generated from :data:`~shard_operator.keys.CACHE_TEMPLATES` (``K_objects``, ``K_owner(uid)``).
"""

from __future__ import annotations

from shard_operator.keys import CACHE_TEMPLATES, lua_names
from shard_operator.storage import redis_errors

__all__ = ["DELETE", "LIST_BY_INDEX", "REPLACE_STEP", "UPSERT", "redis_errors"]

_COMMON = lua_names(CACHE_TEMPLATES) + """
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function unindex(key)
  local owners = redis.call('HGET', K_owners, key)
  if owners then
    for uid in string.gmatch(owners, '[^,]+') do redis.call('SREM', K_owner(uid), key) end
    redis.call('HDEL', K_owners, key)
  end
  local ns = string.match(key, '^([^/]+)/')
  if ns then redis.call('SREM', K_namespace(ns), key) end
end
local function remove(key)
  unindex(key)
  redis.call('HDEL', K_objects, key)
  redis.call('HDEL', K_versions, key)
  redis.call('HDEL', K_hashes, key)
end
"""

# KEYS[1] = objects hash (routes the call); ARGV: prefix, key, resourceVersion, JSON, owner uids ("a,b"),
# and optionally the uid hash (16 hex digits; recorded for ranged relists; with it, a deletion's tombstone
# at the same or a newer version refuses the write). Returns 1 if written, 0 if the stored resourceVersion
# (or the tombstone's) is the same or newer.
UPSERT = _COMMON + """
local key, rv, body, owners, hash = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] or ''
if hash ~= '' then
  local dead = redis.call('GET', K_tombstone(key))
  if dead and not newer(rv, dead) then return 0 end
end

local stored = redis.call('HGET', K_versions, key)
if stored and not newer(rv, stored) then return 0 end
unindex(key)
redis.call('HSET', K_objects, key, body)
redis.call('HSET', K_versions, key, rv)
if hash ~= '' then redis.call('HSET', K_hashes, key, hash) end
if owners ~= '' then
  redis.call('HSET', K_owners, key, owners)
  for uid in string.gmatch(owners, '[^,]+') do redis.call('SADD', K_owner(uid), key) end
end
local ns = string.match(key, '^([^/]+)/')
if ns then redis.call('SADD', K_namespace(ns), key) end
return 1
"""

# ARGV: prefix, key, resourceVersion of the deletion ('' = unconditional), and optionally the seconds to
# keep a tombstone of it ('' = none; sharded ingest). Returns 1 if removed, 0 if absent or stored newer
# (the object was re-created since).
DELETE = _COMMON + """
local key, rv, keep = ARGV[2], ARGV[3], ARGV[4] or ''
if keep ~= '' and rv ~= '' then
  local dead = redis.call('GET', K_tombstone(key))
  if not dead or newer(rv, dead) then redis.call('SET', K_tombstone(key), rv, 'EX', tonumber(keep)) end
end
local stored = redis.call('HGET', K_versions, key)
if not stored then return 0 end
if rv ~= '' and newer(stored, rv) then return 0 end
remove(key)
return 1
"""

# ARGV: prefix, the relist's key set, the list's resourceVersion ('' = unconditional), namespace ('' = all),
# cursor, count, and for a ranged relist the range's bounds (hex as in a shardSelector, '' = no range)
# -> {next cursor ('0' = done), removed}. One HSCAN (SSCAN for a namespace) step over the scope: removes
# each scanned key the relist did not return, unless it is newer than the list; in a ranged relist only
# keys whose recorded uid hash lies in the range (a key without one belongs to no range: kept).
REPLACE_STEP = _COMMON + """
local listed, rv, ns = ARGV[2], ARGV[3], ARGV[4]
local low, high = ARGV[7] or '', ARGV[8] or ''
local function below(a, b)  -- fixed-width hex (16 digits; 2^64, the end of the space, has 17)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function in_range(key)
  if low == '' then return true end
  local hash = redis.call('HGET', K_hashes, key)
  return hash ~= false and not below(hash, low) and below(hash, high)
end
local reply, candidates = nil, {}
if ns == '' then
  reply = redis.call('HSCAN', K_versions, ARGV[5], 'COUNT', tonumber(ARGV[6]))
  for i = 1, #reply[2], 2 do candidates[#candidates + 1] = reply[2][i] end
else
  reply = redis.call('SSCAN', K_namespace(ns), ARGV[5], 'COUNT', tonumber(ARGV[6]))
  candidates = reply[2]
end
local removed = 0
for _, key in ipairs(candidates) do
  if redis.call('SISMEMBER', listed, key) == 0 and in_range(key) then
    local stored = redis.call('HGET', K_versions, key)
    if stored and (rv == '' or not newer(stored, rv)) then
      remove(key)
      removed = removed + 1
    end
  end
end
return {reply[1], removed}
"""

# KEYS[1] = an index set, KEYS[2] = the objects hash. Returns the members and their JSON, in pairs.
LIST_BY_INDEX = """
local keys = redis.call('SMEMBERS', KEYS[1])
if #keys == 0 then return {} end
local out = {}
for first = 1, #keys, 1000 do  -- unpack() is limited to a few thousand values
  local last = math.min(first + 999, #keys)
  local values = redis.call('HMGET', KEYS[2], unpack(keys, first, last))
  for i = first, last do
    local value = values[i - first + 1]
    if value then out[#out + 1] = keys[i]; out[#out + 1] = value end
  end
end
return out
"""
