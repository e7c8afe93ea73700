"""The assigner publishes the live shards as the ring and moves queued keys, never claimed ones."""

from __future__ import annotations

from shard_operator.queue import WorkQueue
from shard_operator.sharding import Assigner, Membership, Router, live_members, shard_for

KEYS = [f"ns/k{i}" for i in range(200)]


def join(client, keys, clock, *shards):
    for shard in shards:
        Membership(client, keys, shard, clock=clock).heartbeat()


def test_rebalance_publishes_the_live_members_and_bumps_the_epoch_only_on_change(client, keys, clock):
    assigner = Assigner(client, keys, clock=clock)
    assert tuple(assigner.rebalance()) == (0, 0, False)
    join(client, keys, clock, "s1", "s0")
    assert assigner.rebalance() == (1, 0, True)
    assert assigner.rebalance() == (1, 0, False)
    assert Router(client, keys).refresh().shards == ("s0", "s1")
    Membership(client, keys, "s1", clock=clock).leave()
    assert assigner.rebalance().epoch == 2
    assert Router(client, keys).refresh().shards == ("s0",)


def test_a_member_without_heartbeat_drops_out_after_the_ttl(client, keys, clock):
    assigner = Assigner(client, keys, clock=clock, member_ttl=10.0)
    join(client, keys, clock, "s0", "s1")
    assigner.rebalance()
    clock.step(6.0)
    join(client, keys, clock, "s0")
    clock.step(6.0)
    assert live_members(client, keys, 10.0, clock=clock) == ["s0"]
    assert assigner.rebalance().changed
    assert Router(client, keys).refresh().shards == ("s0",)


def test_rebalance_moves_queued_keys_of_a_departed_shard_and_never_a_key_in_processing(client, keys, clock):
    assigner = Assigner(client, keys, clock=clock)
    join(client, keys, clock, "s0", "s1", "s2")
    assigner.rebalance()
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many(KEYS)
    claimed = queue.get("s2", "w2")
    assert claimed is not None
    queue.add(claimed.key)  # dirty again while processing: still must not be dispatched
    on_s2 = queue.len("s2")

    Membership(client, keys, "s2", clock=clock).leave()
    epoch, moved, changed = assigner.rebalance()
    assert (epoch, moved, changed) == (2, on_s2, True)
    assert queue.len("s2") == 0 and queue.len() == len(KEYS) - 1
    for shard in ("s0", "s1"):
        queued = {key.decode() for key in client.lrange(keys.ready(shard), 0, -1)}
        assert claimed.key not in queued
        assert queued == {key for key in KEYS if key != claimed.key and shard_for(["s0", "s1"], key) == shard}

    queue.done(claimed)  # pushed again, to the shard of the current ring
    new_shard = shard_for(["s0", "s1"], claimed.key)
    assert claimed.key.encode() in client.lrange(keys.ready(new_shard), 0, -1)


def test_a_joining_shard_takes_over_only_the_keys_it_wins(client, keys, clock):
    assigner = Assigner(client, keys, clock=clock)
    join(client, keys, clock, "s0", "s1", "s2", "s3")
    assigner.rebalance()
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many(KEYS)
    join(client, keys, clock, "s4")
    _, moved, _ = assigner.rebalance()
    assert moved == queue.len("s4") == sum(shard_for([f"s{i}" for i in range(5)], key) == "s4" for key in KEYS)
    assert queue.len() == len(KEYS)


def test_keys_queued_while_no_shard_is_live_wait_until_one_joins(client, keys, clock):
    assigner = Assigner(client, keys, clock=clock)
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many(KEYS[:10])
    assert queue.get("s0", "w") is None
    join(client, keys, clock, "s0")
    assert assigner.rebalance() == (1, 10, True)
    assert queue.len("s0") == 10
    item = queue.get("s0", "w")
    assert item is not None and item.key == KEYS[0]


def test_the_last_shard_leaving_parks_its_queued_keys_as_pending(client, keys, clock):
    assigner = Assigner(client, keys, clock=clock)
    join(client, keys, clock, "s0")
    assigner.rebalance()
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many(KEYS[:5])
    Membership(client, keys, "s0", clock=clock).leave()
    assert assigner.rebalance() == (2, 5, True)
    assert client.llen(keys.pending) == 5
    join(client, keys, clock, "s1")
    assert assigner.rebalance() == (3, 5, True)
    assert queue.len("s1") == 5
