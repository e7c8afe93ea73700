"""A script that fails halfway leaves no stuck key, and no bad number reaches a script.

Redis does not roll back a script that errors midway. Each test poisons one key with the wrong type
(or one argument with NaN), so a command in the middle of a script fails, then removes the poison
and shows the key is still handed out.
"""

from __future__ import annotations

import math

import pytest
import redis

from shard_operator.errors import StorageError
from shard_operator.queue import (
    DelayingQueue,
    ExponentialFailureRateLimiter,
    RateLimitingQueue,
    TokenBucket,
    WorkQueue,
)
from shard_operator.sharding import Assigner, Membership, live_members
from tests.queue.backends import publish_ring


@pytest.fixture
def queue(client, keys, clock) -> DelayingQueue:
    publish_ring(client, keys, clock, "s0")
    return DelayingQueue(client, keys, clock=clock, claim_ttl=30.0)


def poisoned(client, name: str):
    """A context in which ``name`` holds a string, so list, hash and zset commands on it fail."""
    class Poison:
        def __enter__(self) -> None:
            client.set(name, "poison")

        def __exit__(self, *exc: object) -> None:
            client.delete(name)
    return Poison()


def handed_out(queue: WorkQueue, shard: str = "s0") -> list[str]:
    keys = []
    while (item := queue.get(shard, "w")) is not None:
        keys.append(item.key)
        queue.done(item)
    return keys


def test_a_get_failing_at_its_claim_leaves_the_key_queued(queue, keys):
    queue.add("ns/a")
    with poisoned(queue.client, keys.deadlines), pytest.raises(StorageError):
        queue.get("s0", "w")
    assert handed_out(queue) == ["ns/a"]


def test_a_claim_ttl_that_is_not_a_number_inside_the_script_leaves_the_key_queued(queue):
    queue.add("ns/a")
    with pytest.raises(redis.ResponseError):  # bypasses the constructor's check on purpose
        queue._get(queue._route, queue._args("s0", "w", "nan", "0", "1", "100"))
    assert handed_out(queue) == ["ns/a"]


def test_a_done_failing_to_requeue_keeps_the_claim_so_it_can_be_retried(queue, keys):
    queue.add("ns/a")
    item = queue.get("s0", "w")
    queue.add("ns/a")  # changed while processing: done must queue it again
    with poisoned(queue.client, keys.ready("s0")), pytest.raises(StorageError):
        queue.done(item)
    queue.done(item)
    assert handed_out(queue) == ["ns/a"]


def test_a_reap_failing_to_requeue_keeps_the_expired_claim_for_the_next_reap(queue, keys, clock):
    queue.add("ns/a")
    queue.get("s0", "dead")
    clock.step(31.0)
    with poisoned(queue.client, keys.ready("s0")), pytest.raises(StorageError):
        queue.reap_expired()
    assert queue.reap_expired() == 1
    assert handed_out(queue) == ["ns/a"]


def test_an_add_failing_to_queue_leaves_the_key_addable(queue, keys):
    with poisoned(queue.client, keys.ready("s0")), pytest.raises(StorageError):
        queue.add("ns/a")
    assert queue.add("ns/a")
    assert handed_out(queue) == ["ns/a"]


def test_a_promotion_failing_to_queue_leaves_the_key_delayed(queue, keys, clock):
    queue.add_after("ns/a", 1.0)
    clock.step(2.0)
    with poisoned(queue.client, keys.ready("s0")), pytest.raises(StorageError):
        queue.get("s0", "w")
    assert handed_out(queue) == ["ns/a"]


def test_a_rebalance_failing_halfway_moves_every_key_on_the_next_run(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = WorkQueue(client, keys, clock=clock)
    names = [f"ns/k{i}" for i in range(40)]
    queue.add_many(names)
    Membership(client, keys, "s1", clock=clock).heartbeat()
    assigner = Assigner(client, keys, clock=clock)
    with poisoned(client, keys.ready("s1")), pytest.raises(StorageError):
        assigner.rebalance()
    assert assigner.rebalance().moved > 0
    assert sorted(handed_out(queue, "s0") + handed_out(queue, "s1")) == sorted(names)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0])
def test_a_claim_ttl_or_wait_that_is_not_a_positive_finite_number_is_refused(client, keys, bad):
    with pytest.raises(ValueError, match="claim_ttl"):
        WorkQueue(client, keys, claim_ttl=bad)
    with pytest.raises(ValueError, match="max_wait"):
        WorkQueue(client, keys, max_wait=bad)
    with pytest.raises(ValueError, match="member_ttl"):
        Assigner(client, keys, member_ttl=bad)
    with pytest.raises(ValueError):
        live_members(client, keys, bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.5])
def test_a_delay_that_is_not_a_finite_non_negative_number_is_refused(queue, client, keys, bad):
    with pytest.raises(ValueError, match="delay"):
        queue.add_after("ns/a", bad)
    rate_limited = RateLimitingQueue(client, keys, bucket=None)
    with pytest.raises(ValueError, match="at_least"):
        rate_limited.add_rate_limited("ns/a", at_least=bad)
    assert queue.num_delayed() == 0 and queue.len() == 0


@pytest.mark.parametrize(("qps", "burst"), [(math.nan, 10), (-1.0, 10), (0.0, 10), (10.0, 0), (10.0, 1.5)])
def test_a_token_bucket_needs_a_positive_finite_rate_and_an_integer_burst(qps, burst):
    with pytest.raises(ValueError, match="TokenBucket"):
        TokenBucket(qps=qps, burst=burst)


@pytest.mark.parametrize(("base", "cap"), [(math.nan, 1.0), (0.005, math.inf), (0.0, 1.0), (2.0, 1.0)])
def test_a_backoff_needs_a_finite_positive_base_below_its_cap(client, keys, base, cap):
    with pytest.raises(ValueError, match="backoff"):
        ExponentialFailureRateLimiter(client, keys, base=base, cap=cap)


def test_promote_and_reap_limits_must_be_positive_integers(client, keys):
    with pytest.raises(ValueError, match="promote_limit"):
        WorkQueue(client, keys, promote_limit=0)
    with pytest.raises(ValueError, match="limit"):
        WorkQueue(client, keys).reap_expired(limit=0)
