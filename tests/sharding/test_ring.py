"""Rendezvous hashing spreads keys evenly and moves about 1/n of them when the ring changes."""

from __future__ import annotations

import pytest

from shard_operator.queue import WorkQueue
from shard_operator.sharding import Ring, Router, shard_for
from tests.queue.backends import publish_ring

KEYS = [f"ns{i % 13}/object-{i}" for i in range(1000)]


def assignment(shards: list[str]) -> dict[str, str | None]:
    return {key: shard_for(shards, key) for key in KEYS}


def test_with_1000_keys_growing_from_4_to_5_shards_moves_10_to_30_percent():
    before = assignment([f"shard-{i}" for i in range(4)])
    after = assignment([f"shard-{i}" for i in range(5)])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert 0.10 <= len(moved) / len(KEYS) <= 0.30
    assert all(after[key] == "shard-4" for key in moved), "only keys the new shard wins move"


def test_removing_a_shard_moves_only_its_own_keys():
    before = assignment(["a", "b", "c", "d", "e"])
    after = assignment(["a", "b", "d", "e"])
    assert {key for key in KEYS if before[key] != after[key]} == {key for key in KEYS if before[key] == "c"}


SHARD_SETS = [[f"shard-{i}" for i in range(4)], [f"pod-{p}-{w}" for p in range(3) for w in range(3)]]


@pytest.mark.parametrize("shards", SHARD_SETS)
def test_every_shard_gets_a_fair_share_of_the_keys(shards):
    counts = {shard: 0 for shard in shards}
    for shard in assignment(shards).values():
        assert shard is not None
        counts[shard] += 1
    fair = len(KEYS) / len(shards)
    assert all(0.7 * fair <= count <= 1.3 * fair for count in counts.values()), counts


def test_an_empty_ring_assigns_no_shard():
    assert shard_for([], "ns/a") is None
    assert Ring(0, ()).shard_for("ns/a") is None


def test_redis_routes_every_key_to_the_shard_python_computes(client, keys, clock):
    shards = ["shard-0", "shard-1", "pod-2-w0", "ünïcode"]
    publish_ring(client, keys, clock, *shards)
    queue = WorkQueue(client, keys, clock=clock)
    sample = [*KEYS[:300], "ns/ünïcode-name", "cluster-scoped"]
    queue.add_many(sample)
    for shard in shards:
        routed = {key.decode() for key in client.lrange(keys.ready(shard), 0, -1)}
        assert routed == {key for key in sample if shard_for(shards, key) == shard}


def test_router_reads_the_published_ring_and_caches_it_per_epoch(client, keys, clock):
    router = Router(client, keys)
    assert router.refresh() == Ring(0, ())
    publish_ring(client, keys, clock, "b", "a")
    assert router.ring().epoch == 0, "the cached ring is used until refreshed"
    ring = router.refresh()
    assert (ring.epoch, ring.shards) == (1, ("a", "b"))
    assert router.refresh() is ring
    assert router.shard_for("ns/x") == shard_for(["a", "b"], "ns/x")
