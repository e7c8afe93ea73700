"""Key → slot → shard: a fixed table of 16,384 slots, each assigned by rendezvous hashing, in Python and Lua.

Routing a key costs the same whatever the number of shards: the queue's scripts hash the key to one
of :data:`SLOTS` slots and read the slot's shard from the table stored in Redis (one ``HGET``); the
table is rebuilt, in bounded chunks, only when the ring changes (:mod:`.scripts`, ``SLOTS_STEP``).
Each slot's shard is picked by rendezvous (highest-random-weight) hashing over the ring, so a ring
change moves only the slots the new shards win, or those of the shards that left: about 1/n of them.

Both hashes must be computable inside Redis, identically on Redis's Lua 5.1 (doubles) and on
fakeredis's Lua 5.4 (integers). ``redis.sha1hex`` is missing from fakeredis and Lua 5.1 has no bit
operations, so they are pure integer arithmetic that stays below 2**53:

- a string hashes to a polynomial over its UTF-8 bytes modulo the prime 2**31 - 1; its slot is that
  hash modulo 16,384;
- a (shard, slot) score is three rounds of ``x = (x*x + c) mod p`` with ``p`` < 2**26, seeded by
  the slot plus a mix of the shard's hash; the non-linear rounds make scores of different shards
  independent enough that n shards each win about 1/n of the slots.

The slot's shard is the one with the highest score (ties broken by the larger id). It lives in the
queue, whose scripts route every key; :mod:`shard_operator.sharding` imports it from here for its
Python view of the ring (sharding depends on the queue, never the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["LUA_HRW", "SLOTS", "key_hash", "key_slot", "score", "shard_for", "slot_owner", "slot_table"]

#: How many slots keys hash to (as many as Redis Cluster's); the table has one entry per slot.
SLOTS = 16384

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


def key_slot(key: str) -> int:
    """The slot of ``key``: its hash modulo :data:`SLOTS`; equal to the Lua ``slot_of``."""
    return key_hash(key) % SLOTS


def _mix(value: int, salt: int) -> int:
    value %= _P2
    for _ in range(3):
        value = (value * value + salt) % _P2
    return value


def score(shard: str, slot: int) -> int:
    """The rendezvous weight of ``slot`` on ``shard``; equal to the Lua ``hrw_score``."""
    shard_hash = key_hash(shard)
    return _mix(slot + _mix(shard_hash, _SEED) * _SPREAD, shard_hash % _P2)


def slot_owner(shards: Sequence[str], slot: int) -> str | None:
    """The shard of ``slot`` among ``shards``, or None when there is none."""
    if not shards:
        return None
    return max(shards, key=lambda shard: (score(shard, slot), shard))


def slot_table(shards: Sequence[str]) -> list[str | None]:
    """Every slot's shard: the table the scripts build in Redis for the ring ``shards``."""
    return [slot_owner(shards, slot) for slot in range(SLOTS)]


def shard_for(shards: Sequence[str], key: str) -> str | None:
    """The shard of ``key`` among ``shards``, or None when there is none."""
    return slot_owner(shards, key_slot(key))


# Lua twin of the functions above. ``hrw_ring(ids)`` precomputes each shard's terms once per script
# call; ``hrw_score(entry, slot)`` is one shard's weight, ``hrw_pick(ring, slot)`` the winning shard id
# (nil for an empty ring), ``slot_of(key)`` a key's slot and ``slot_field(slot)`` its table field.
LUA_HRW = f"""
local HRW_P1, HRW_P2, SLOTS = {_P1}, {_P2}, {SLOTS}
local function hrw_hash(s)
  local x = 0
  for i = 1, #s do x = (x * 257 + string.byte(s, i)) % HRW_P1 end
  return x
end
local function slot_of(key) return hrw_hash(key) % SLOTS end
local function slot_field(slot) return string.format('%d', slot) end
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
local function hrw_score(entry, slot) return hrw_mix(slot + entry[2], entry[3]) end
local function hrw_pick(ring, slot)
  local best, best_score = nil, -1
  for _, s in ipairs(ring) do
    local sc = hrw_score(s, slot)
    if sc > best_score or (sc == best_score and s[1] > best) then best, best_score = s[1], sc end
  end
  return best
end
"""
