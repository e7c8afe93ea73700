"""The slot table: keys route through 16,384 slots whose shards Redis stores, built in bounded chunks.

What is proved here: the Lua slot of a key and the table Redis builds equal the Python functions;
a ring change moves about 1/n of the slots (only those a joining shard wins, or those of a leaving
one); a build cut at any step, or restarted by another ring change, ends in the same table; and a
rebalance with adds, gets and dones interleaved between its steps loses and duplicates no key.
"""

from __future__ import annotations

import random

import pytest

from shard_operator.queue import WorkQueue
from shard_operator.queue.hashing import LUA_HRW, SLOTS, key_slot, shard_for, slot_table
from shard_operator.sharding import Membership
from tests.queue.backends import publish_ring
from tests.queue.test_chunked_scripts import assert_invariant, ring

NAMES = [f"ns{i % 7}/object-{i}" for i in range(300)]


def stored_table(client, keys) -> list[str | None]:
    table = {field.decode(): shard.decode() for field, shard in client.hgetall(keys.slots).items()}
    return [table.get(str(slot)) for slot in range(SLOTS)]


def test_the_lua_slot_of_a_key_is_the_python_slot(client):
    sample = [*NAMES[:50], "ünïcode/ñame", "cluster-scoped", "", "a" * 300]
    script = LUA_HRW + "local out = {} for i, key in ipairs(ARGV) do out[i] = slot_of(key) end return out"
    assert client.eval(script, 0, *sample) == [key_slot(key) for key in sample]


def test_the_table_redis_builds_is_the_python_table_through_joins_and_leaves(client, keys, clock):
    for shards in (["s0", "s1", "s2"], ["s0", "s1", "s2", "s3"], ["s0", "s2", "s3"], ["s0", "s3", "x9", "x8"],
                   ["s3"]):
        publish_ring(client, keys, clock, *shards)
        assert ring(client, keys) == sorted(shards)
        assert stored_table(client, keys) == slot_table(sorted(shards)), shards


@pytest.mark.parametrize(("before", "after"), [(8, 9), (9, 8)])
def test_a_ring_change_moves_about_one_nth_of_the_slots_and_only_those_of_the_changed_shard(
        client, keys, clock, before, after):
    publish_ring(client, keys, clock, *[f"s{i}" for i in range(before)])
    old = stored_table(client, keys)
    publish_ring(client, keys, clock, *[f"s{i}" for i in range(after)])
    new = stored_table(client, keys)
    changed = [slot for slot in range(SLOTS) if old[slot] != new[slot]]
    assert 0.7 / 9 <= len(changed) / SLOTS <= 1.3 / 9
    assert all("s8" in (old[slot], new[slot]) for slot in changed), "only the joining or leaving shard's slots move"


def test_a_slot_build_cut_at_any_step_or_restarted_by_another_change_ends_in_the_full_table(client, keys, clock):
    publish_ring(client, keys, clock, "s0", "s1")
    queue = WorkQueue(client, keys, clock=clock, slot_budget=3000)
    Membership(client, keys, "s2", clock=clock).heartbeat()
    queue._rebalance(queue._route, queue._args("60.0"))
    assert queue.build_slots(steps=2) is None, "1024 slots a call at most: a join takes 16 calls"
    assert ring(client, keys) == ["s0", "s1"], "the ring changes only with its table"
    assert stored_table(client, keys) == slot_table(["s0", "s1"])
    Membership(client, keys, "s3", clock=clock).heartbeat()  # the ring changes again mid-build: restarted
    Membership(client, keys, "s0", clock=clock).leave()
    result = queue.rebalance(60.0)
    assert result.changed and ring(client, keys) == ["s1", "s2", "s3"]
    assert stored_table(client, keys) == slot_table(["s1", "s2", "s3"])
    assert not client.exists(keys.ring_next) and not client.exists(keys.slots_next)
    assert queue.rebalance(60.0) == (result.epoch, 0, False)


def test_every_build_call_computes_a_bounded_number_of_scores(client, keys, clock):
    queue = WorkQueue(client, keys, clock=clock, slot_budget=4096)
    for shard in (f"s{i}" for i in range(16)):
        Membership(client, keys, shard, clock=clock).heartbeat()
    queue._rebalance(queue._route, queue._args("60.0"))
    built = []
    while True:
        left, epoch, count = queue._slots_step(queue._route, queue._args("4096"))
        built.append(int(count))
        if not int(left):
            break
    assert max(built) <= 4096 // 16 and sum(built) == SLOTS and int(epoch) == 1


def test_a_rebalance_with_adds_gets_and_dones_between_its_steps_loses_and_duplicates_no_key(client, keys, clock):
    """Adds route by the published table while the next one is built, then by the new one; gets move keys
    found in the wrong list; every key added is handed out once per add that made it dirty."""
    rng = random.Random(7)
    publish_ring(client, keys, clock, "s0", "s1", "s2")
    queue = WorkQueue(client, keys, clock=clock, chunk=7, slot_budget=2500)
    handed: list[str] = []
    pending = list(NAMES)
    rng.shuffle(pending)

    def churn() -> None:
        queue.add_many(pending[:9])
        del pending[:9]
        shards = ring(client, keys)
        for shard in rng.sample(shards, k=min(2, len(shards))):
            item = queue.get(shard, f"w-{shard}")
            if item is not None:
                assert shard_for(shards, item.key) == shard, "a key is handed out only by its shard"
                handed.append(item.key)
                queue.done(item)
        assert_invariant(client, keys, NAMES)

    for change in (["s0", "s1", "s2", "s3"], ["s1", "s2", "s3"], ["s1", "s3", "s4", "s5"]):
        client.delete(keys.members)
        for shard in change:
            Membership(client, keys, shard, clock=clock).heartbeat()
        queue._rebalance(queue._route, queue._args("60.0"))
        while queue.build_slots(steps=1) is None:
            churn()
        while queue.finish_rebalance(steps=1) or client.exists(keys.rebalancing):
            churn()
        assert ring(client, keys) == change
    queue.add_many(pending)
    shards = ring(client, keys)
    for shard in shards:
        while (item := queue.get(shard, "w")) is not None:
            assert shard_for(shards, item.key) == shard
            handed.append(item.key)
            queue.done(item)
    assert sorted(handed) == sorted(NAMES), "every key handed out exactly once"


def test_a_ring_left_without_a_slot_table_by_an_older_version_gets_one_and_its_keys_are_handed_out(
        client, keys, clock):
    publish_ring(client, keys, clock, "s0", "s1")
    client.delete(keys.slots)  # what a version before slot tables left: a ring and no table
    queue = WorkQueue(client, keys, clock=clock)
    for shard in ("s0", "s1"):
        Membership(client, keys, shard, clock=clock).heartbeat()
    queue.rebalance(60.0)
    assert stored_table(client, keys) == slot_table(["s0", "s1"])
    queue.add_many(NAMES[:20])
    handed = [item.key for shard in ("s0", "s1") for _ in range(20)
              if (item := queue.get(shard, "owner")) is not None]
    assert sorted(handed) == sorted(NAMES[:20]) and client.llen(keys.pending) == 0
