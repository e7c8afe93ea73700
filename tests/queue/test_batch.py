"""claim_batch / done_batch: a batch costs one script call and changes each key exactly as get / done do."""

from __future__ import annotations

from shard_operator.queue import RateLimitingQueue, TokenBucket, WorkQueue
from tests.queue.backends import publish_ring
from tests.queue.test_chunked_scripts import assert_invariant

NAMES = [f"ns/k{i}" for i in range(40)]


def test_a_batch_claim_never_hands_a_key_to_two_owners(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many(NAMES[:20])
    first = queue.claim_batch("s0", "a", 8)
    queue.add_many(NAMES[:20])  # dirty again while processing: none may be handed out twice
    second = queue.claim_batch("s0", "b", 50)
    assert len(first) == 8 and len(second) == 12
    assert not {i.key for i in first} & {i.key for i in second}
    assert len({i.token for i in first + second}) == 20
    assert_invariant(client, keys, NAMES)
    released = queue.done_batch(first)
    assert released == [True] * 8
    third = queue.claim_batch("s0", "c", 50)  # the dirty keys of the first batch, queued again by done
    assert sorted(i.key for i in third) == sorted(i.key for i in first)
    assert queue.done_batch(first) == [False] * 8, "a released claim is not released twice"
    assert_invariant(client, keys, NAMES)


def test_a_batch_claim_respects_the_token_bucket_and_delays(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=TokenBucket(qps=1.0, burst=5))
    queue.add_many(NAMES[:10])
    queue.add_after("ns/late", 10.0)
    assert len(queue.claim_batch("s0", "w", 16)) == 5, "at most the bucket's whole tokens"
    assert queue.claim_batch("s0", "w", 16) == []
    clock.step(2.0)
    assert len(queue.claim_batch("s0", "w", 16)) == 2
    clock.step(20.0)
    keys_now = [item.key for item in queue.claim_batch("s0", "w", 16)]
    assert len(keys_now) == 4 and "ns/late" in keys_now, "due delayed keys are promoted first"


def test_a_dead_owners_batch_is_released_by_release_owner(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many(NAMES[:10])
    batch = queue.claim_batch("s0", "host:1:s0", 10)
    assert len(batch) == 10 and queue.num_processing() == 10
    assert queue.release_owner("host:1:s0") == 10
    assert sorted(i.key for i in queue.claim_batch("s0", "host:2:s0", 10)) == sorted(NAMES[:10])
    assert queue.done_batch(batch) == [False] * 10, "the dead owner's tokens are stale"


def test_done_batch_requeues_dirty_keys_and_forgets_only_flagged_ones(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=None)
    queue.add_many(NAMES[:4])
    batch = queue.claim_batch("s0", "w", 4)
    for item in batch:
        queue.rate_limiter.when(item.key)
    queue.add(batch[0].key)
    released, following = queue.done_batch_and_claim(batch, "s0", "w", 4, forget=[True, True, False, False])
    assert released == [True] * 4
    assert [item.key for item in following] == [batch[0].key]
    assert [queue.num_requeues(item.key) for item in batch] == [0, 0, 1, 1]
    assert_invariant(client, keys, NAMES)
