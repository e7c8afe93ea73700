"""No queue script scales with the keyspace: big adds, rebalances and releases run in bounded chunks.

Each test checks the queue invariant after every chunk (a key sits in exactly one ready list or the
pending list if and only if it is dirty and not processing) and that an interrupted operation,
finished or redone later, loses and duplicates no key.
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from shard_operator.keys import Keys
from shard_operator.queue import WorkQueue
from shard_operator.queue.hashing import shard_for
from shard_operator.sharding import Membership
from tests.queue.backends import publish_ring

NAMES = [f"ns/k{i}" for i in range(120)]


def _text(value: bytes) -> str:
    return value.decode()


def queued(client: redis.Redis, keys: Keys) -> Counter[str]:
    """How many entries each key has across every ready list and the pending list."""
    lists = [name for name in client.scan_iter(match=keys.ready("x")[:-1] + "*")] + [keys.pending]
    return Counter(_text(key) for name in lists for key in client.lrange(name, 0, -1))


def assert_invariant(client: redis.Redis, keys: Keys, names: list[str]) -> None:
    entries = queued(client, keys)
    dirty = {_text(key) for key in client.hkeys(keys.dirty)}
    processing = {_text(key) for key in client.hkeys(keys.processing)}
    for name in names:
        expected = 1 if name in dirty and name not in processing else 0
        assert entries[name] == expected, f"{name}: {entries[name]} entries, dirty={name in dirty}"


def ring(client: redis.Redis, keys: Keys) -> list[str]:
    return [_text(shard) for shard in client.lrange(keys.ring, 0, -1)]


def drain(queue: WorkQueue, shards: list[str]) -> list[str]:
    """Hand out every queued key; each shard gets only the keys the ring assigns it."""
    out = []
    for shard in shards:
        while (item := queue.get(shard, f"w-{shard}")) is not None:
            assert shard_for(ring(queue.client, queue.keys), item.key) == shard
            out.append(item.key)
            queue.done(item)
    return out


@pytest.mark.parametrize("size", [6, 7, 8, 14, 15])
def test_add_many_over_chunk_boundaries_adds_each_key_once(client, keys, clock, size):
    publish_ring(client, keys, clock, "s0", "s1")
    queue = WorkQueue(client, keys, clock=clock, chunk=7)
    batch = NAMES[:size] + NAMES[:3]  # repeats fall into a later chunk than their first add
    assert queue.add_many(batch) == size
    assert queue.add_many(batch) == 0
    assert_invariant(client, keys, NAMES)
    assert sorted(drain(queue, ["s0", "s1"])) == sorted(NAMES[:size])


def test_a_rebalance_cut_after_any_chunk_then_redone_loses_and_duplicates_no_key(client, keys, clock):
    publish_ring(client, keys, clock, "s0", "s1", "s2", "s3")
    queue = WorkQueue(client, keys, clock=clock, chunk=9)
    queue.add_many(NAMES)
    Membership(client, keys, "s4", clock=clock).heartbeat()
    first = queue.rebalance(60.0, steps=1)
    assert first.changed and ring(client, keys) == ["s0", "s1", "s2", "s3", "s4"], "the ring is published first"
    assert_invariant(client, keys, NAMES)
    for _ in range(3):
        queue.finish_rebalance(steps=2)
        assert_invariant(client, keys, NAMES)
    Membership(client, keys, "s1", clock=clock).leave()  # the ring changes again before the move ended
    queue.rebalance(60.0, steps=1)
    assert_invariant(client, keys, NAMES)
    queue.rebalance(60.0)
    assert not client.exists(keys.rebalancing)
    shards = ring(client, keys)
    assert shards == ["s0", "s2", "s3", "s4"]
    for shard in shards:
        listed = [_text(key) for key in client.lrange(keys.ready(shard), 0, -1)]
        assert all(shard_for(shards, key) == shard for key in listed), "every key ends in its shard's list"
    assert client.llen(keys.ready("s1")) == 0
    assert sorted(drain(queue, shards)) == sorted(NAMES)


def test_get_moves_a_key_of_another_shard_instead_of_handing_it_out(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = WorkQueue(client, keys, clock=clock, chunk=5)
    queue.add_many(NAMES[:40])
    Membership(client, keys, "s1", clock=clock).heartbeat()
    queue.rebalance(60.0, steps=0)  # published, nothing moved yet
    assert client.llen(keys.ready("s0")) == 40
    got = drain(queue, ["s0"])  # drain asserts each key handed out belongs to s0
    assert_invariant(client, keys, NAMES)
    moved = [_text(key) for key in client.lrange(keys.ready("s1"), 0, -1)]
    assert sorted(got + moved) == sorted(NAMES[:40]) and moved
    queue.finish_rebalance()
    assert sorted(got + drain(queue, ["s1"])) == sorted(NAMES[:40])


def test_the_last_shard_leaving_mid_rebalance_parks_every_key_as_pending_then_a_new_one_gets_them(client, keys, clock):
    publish_ring(client, keys, clock, "s0", "s1")
    queue = WorkQueue(client, keys, clock=clock, chunk=4)
    queue.add_many(NAMES[:30])
    client.delete(keys.members)
    queue.rebalance(60.0, steps=2)
    assert_invariant(client, keys, NAMES)
    queue.rebalance(60.0)
    assert client.llen(keys.pending) == 30
    Membership(client, keys, "s9", clock=clock).heartbeat()
    assert queue.rebalance(60.0).moved == 30
    assert sorted(drain(queue, ["s9"])) == sorted(NAMES[:30])


def test_release_owner_queues_again_only_the_dead_owners_claims_in_chunks(client, keys, clock):
    publish_ring(client, keys, clock, "s0", "s1")
    queue = WorkQueue(client, keys, clock=clock, chunk=3)
    queue.add_many(NAMES[:20])
    dead, alive = "host:12:s0", "host:123:s0"
    claimed = {dead: [], alive: []}
    for i, owner in enumerate([dead, alive] * 5):
        shard = "s0" if i % 2 == 0 else "s1"
        item = queue.get(shard, owner) or queue.get("s1" if shard == "s0" else "s0", owner)
        assert item is not None
        claimed[owner].append(item)
    clock.step(5.0)
    queue.add(claimed[dead][0].key)  # added again while processed: dirty since then, kept
    readded_at = float(client.hget(keys.dirty, claimed[dead][0].key))
    assert queue.release_owner(dead) == 5
    assert_invariant(client, keys, NAMES)
    assert float(client.hget(keys.dirty, claimed[dead][0].key)) == readded_at
    processing = {_text(key): _text(token) for key, token in client.hgetall(keys.processing).items()}
    assert sorted(processing) == sorted(item.key for item in claimed[alive])
    assert all(token.startswith(alive + ":") for token in processing.values())
    assert client.zcard(keys.deadlines) == 5
    assert queue.release_owner(dead) == 0
    for item in claimed[alive]:
        queue.done(item)
    done = {item.key for item in claimed[alive]}
    assert sorted(drain(queue, ["s0", "s1"])) == sorted(set(NAMES[:20]) - done)
