"""Rendezvous (highest-random-weight) hashing of keys over shard ids, in Python and in Lua.

The queue's Lua scripts route a key to its shard atomically, reading the ring stored in Redis, so
the hash must be computable inside Redis, identically on Redis's Lua 5.1 (doubles) and on
fakeredis's Lua 5.4 (integers). ``redis.sha1hex`` is missing from fakeredis and Lua 5.1 has no
bit operations, so the score is pure integer arithmetic that stays below 2**53:

- a string hashes to a polynomial over its UTF-8 bytes modulo the prime 2**31 - 1;
- a (shard, key) score is three rounds of ``x = (x*x + c) mod p`` with ``p`` < 2**26, seeded by
  the key's hash plus a mix of the shard's; the non-linear rounds make scores of different shards
  independent enough that n shards each win about 1/n of the keys.

Rendezvous hashing picks the shard with the highest score (ties broken by the larger id), so
adding a shard moves only the keys it now wins (about 1/n) and removing one moves only its own.
It lives in the queue, whose scripts route every key; :mod:`shard_operator.sharding` imports it
from here for its Python view of the ring (sharding depends on the queue, never the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["LUA_HRW", "key_hash", "score", "shard_for"]

_P1 = 2147483647
_P2 = 67108859
_SEED = 12345
_SPREAD = 7919


def key_hash(text: str) -> int:
    """The polynomial hash of ``text``'s UTF-8 bytes modulo 2**31 - 1."""
    value = 0
    for byte in text.encode():
        value = (value * 257 + byte) % _P1
    return value


def _mix(value: int, salt: int) -> int:
    value %= _P2
    for _ in range(3):
        value = (value * value + salt) % _P2
    return value


def score(shard: str, key: str) -> int:
    """The rendezvous weight of ``key`` on ``shard``; equal to the Lua ``hrw_score``."""
    shard_hash = key_hash(shard)
    return _mix(key_hash(key) + _mix(shard_hash, _SEED) * _SPREAD, shard_hash % _P2)


def shard_for(shards: Sequence[str], key: str) -> str | None:
    """The shard of ``key`` among ``shards``, or None when there is none."""
    if not shards:
        return None
    return max(shards, key=lambda shard: (score(shard, key), shard))


# Lua twin of the functions above. ``hrw_ring(ids)`` precomputes each shard's terms once per script
# call; ``hrw_pick(ring, key)`` returns the winning shard id, or nil for an empty ring.
LUA_HRW = f"""
local HRW_P1, HRW_P2 = {_P1}, {_P2}
local function hrw_hash(s)
  local x = 0
  for i = 1, #s do x = (x * 257 + string.byte(s, i)) % HRW_P1 end
  return x
end
local function hrw_mix(x, c)
  x = x % HRW_P2
  for _ = 1, 3 do x = (x * x + c) % HRW_P2 end
  return x
end
local function hrw_ring(ids)
  local ring = {{}}
  for i, id in ipairs(ids) do
    local h = hrw_hash(id)
    ring[i] = {{id, hrw_mix(h, {_SEED}) * {_SPREAD}, h % HRW_P2}}
  end
  return ring
end
local function hrw_pick(ring, key)
  local kh = hrw_hash(key)
  local best, best_score = nil, -1
  for _, s in ipairs(ring) do
    local sc = hrw_mix(kh + s[2], s[3])
    if sc > best_score or (sc == best_score and s[1] > best) then best, best_score = s[1], sc end
  end
  return best
end
"""
