"""Failing keys back off per key; the global token bucket throttles hand-outs across all instances."""

from __future__ import annotations

import math
import multiprocessing

import pytest
import redis

from shard_operator.errors import ClaimLostError
from shard_operator.keys import Keys
from shard_operator.queue import (
    ExponentialFailureRateLimiter,
    ManualClock,
    MaxOf,
    RateLimitingQueue,
    TokenBucket,
    WorkQueue,
)
from tests.queue.backends import publish_ring


class Fixed:
    def __init__(self, delay: float) -> None:
        self.delay, self.count = delay, 0

    def when(self, key: str) -> float:
        self.count += 1
        return self.delay

    def forget(self, key: str) -> None:
        self.count = 0

    def num_requeues(self, key: str) -> int:
        return self.count

    def state_hashes(self) -> None:
        return None  # in memory: the queue must call forget()


def test_rate_limited_backoff_is_5ms_doubling_and_capped_at_1000s(client, keys):
    limiter = ExponentialFailureRateLimiter(client, keys)
    delays = [limiter.when("ns/a") for _ in range(22)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[17] == pytest.approx(0.005 * 2**17)
    assert delays[18:] == [1000.0] * 4
    assert limiter.num_requeues("ns/a") == 22
    assert limiter.when("ns/b") == 0.005


def test_backoff_base_and_cap_are_configurable_and_survive_huge_failure_counts(client, keys):
    limiter = ExponentialFailureRateLimiter(client, keys, base=1.0, cap=60.0)
    assert [limiter.when("ns/a") for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    client.hset(keys.failures, "ns/a", 5000)
    assert limiter.when("ns/a") == 60.0


def test_forget_resets_the_backoff(client, keys):
    limiter = ExponentialFailureRateLimiter(client, keys)
    for _ in range(5):
        limiter.when("ns/a")
    limiter.forget("ns/a")
    assert limiter.num_requeues("ns/a") == 0
    assert limiter.when("ns/a") == 0.005


def test_max_of_takes_the_longest_delay_and_forgets_in_all(client, keys):
    exponential, fixed = ExponentialFailureRateLimiter(client, keys), Fixed(0.02)
    limiter = MaxOf(exponential, fixed)
    assert [limiter.when("ns/a") for _ in range(4)] == [0.02, 0.02, 0.02, 0.04]
    assert limiter.num_requeues("ns/a") == 4
    limiter.forget("ns/a")
    assert limiter.num_requeues("ns/a") == 0 and exponential.num_requeues("ns/a") == 0


def test_add_rate_limited_requeues_after_the_backoff(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=None)
    assert queue.add_rate_limited("ns/a") == 0.005
    assert queue.add_rate_limited("ns/a") == 0.01
    assert queue.num_requeues("ns/a") == 2
    assert queue.get("s0", "w1") is None
    clock.step(0.005)
    item = queue.get("s0", "w1")
    assert item is not None and item.key == "ns/a"
    queue.forget("ns/a")
    assert queue.num_requeues("ns/a") == 0


@pytest.mark.parametrize("finish", ["done", "done_and_get"])
@pytest.mark.parametrize("custom_limiter", [False, True])
def test_done_with_forget_resets_the_failures_only_when_the_claim_is_held(client, keys, clock, finish,
                                                                         custom_limiter):
    publish_ring(client, keys, clock, "s0")
    limiter = MaxOf(ExponentialFailureRateLimiter(client, keys), Fixed(0.0)) if custom_limiter else None
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=None, rate_limiter=limiter)
    queue.add_rate_limited("ns/a")
    queue.add_rate_limited("ns/a")
    clock.step(1.0)
    item = queue.get("s0", "w1")
    assert item is not None and queue.num_requeues("ns/a") == 2
    getattr(queue, finish)(item, forget=True)
    assert queue.num_requeues("ns/a") == 0
    # Without forget, the failures stay: a retried key keeps backing off.
    queue.add_rate_limited("ns/a")
    clock.step(1.0)
    item = queue.get("s0", "w1")
    getattr(queue, finish)(item)
    assert queue.num_requeues("ns/a") == 1


def test_token_bucket_is_shared_by_two_queue_instances_and_refills_at_qps(connect, keys, clock):
    publish_ring(connect(), keys, clock, "s0")
    bucket = TokenBucket(qps=2.0, burst=3)
    first = RateLimitingQueue(connect(), keys, clock=clock, bucket=bucket)
    second = RateLimitingQueue(connect(), keys, clock=clock, bucket=bucket)
    first.add_many([f"ns/k{i}" for i in range(10)])
    handed = [first.get("s0", "a"), second.get("s0", "b"), first.get("s0", "a")]
    assert all(handed)
    assert second.get("s0", "b") is None and first.get("s0", "a") is None
    clock.step(0.5)
    assert second.get("s0", "b") is not None
    assert first.get("s0", "a") is None
    clock.step(10.0)  # refills to the burst, not beyond
    assert sum(q.get("s0", "x") is not None for q in (first, second, first, second)) == 3


def test_a_redis_clock_set_back_an_hour_does_not_freeze_the_bucket(connect, keys, clock):
    publish_ring(connect(), keys, clock, "s0")
    bucket = TokenBucket(qps=10.0, burst=5)
    ahead = RateLimitingQueue(connect(), keys, clock=ManualClock(clock() + 3600), bucket=bucket)
    on_time = RateLimitingQueue(connect(), keys, clock=clock, bucket=bucket)
    on_time.add_many([f"ns/k{i}" for i in range(20)])
    for _ in range(5):  # the server's clock, an hour ahead, drains the burst and stamps the bucket
        ahead.done(ahead.get("s0", "ahead"))
    served = 0
    for _ in range(4):  # then set back: 10/s capped by the burst of 5 a step, the 15 left, not none for an hour
        clock.step(1.0)
        while (item := on_time.get("s0", "on-time")) is not None:
            on_time.done(item)
            served += 1
    assert served == 15


def test_default_bucket_is_10_per_second_with_a_burst_of_100(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = RateLimitingQueue(client, keys, clock=clock)
    queue.add_many([f"ns/k{i}" for i in range(120)])
    assert sum(queue.get("s0", "w") is not None for _ in range(120)) == 100
    clock.step(1.0)
    assert sum(queue.get("s0", "w") is not None for _ in range(20)) == 10


@pytest.mark.parametrize("qps", [None, math.inf])
def test_a_disabled_bucket_never_throttles(client, keys, clock, qps):
    publish_ring(client, keys, clock, "s0")
    queue = WorkQueue(client, keys, clock=clock, bucket=TokenBucket(qps=qps, burst=1))
    queue.add_many([f"ns/k{i}" for i in range(20)])
    assert sum(queue.get("s0", "w") is not None for _ in range(20)) == 20


def test_token_bucket_rejects_a_rate_of_zero():
    with pytest.raises(ValueError):
        TokenBucket(qps=0)


def _take_all(url: str, prefix: str, results: multiprocessing.Queue) -> None:
    client = redis.Redis.from_url(url)
    queue = WorkQueue(client, Keys(prefix), bucket=TokenBucket(qps=0.001, burst=7))
    results.put(sum(queue.get("s0", "proc") is not None for _ in range(20)))
    client.close()


@pytest.mark.redis
def test_token_bucket_is_shared_by_two_processes(redis_url):
    client = redis.Redis.from_url(redis_url)
    keys = Keys.for_controller("procs")
    publish_ring(client, keys, None, "s0")
    WorkQueue(client, keys).add_many([f"ns/k{i}" for i in range(40)])
    client.close()
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    processes = [context.Process(target=_take_all, args=(redis_url, keys.prefix, results)) for _ in range(2)]
    for process in processes:
        process.start()
    counts = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert sum(counts) == 7


def test_add_rate_limited_waits_the_longer_of_the_backoff_and_at_least(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=None,
                              rate_limiter=ExponentialFailureRateLimiter(client, keys, base=1.0))
    assert queue.add_rate_limited("ns/a", at_least=5.0) == 5.0  # a Retry-After longer than the backoff
    assert queue.num_requeues("ns/a") == 1, "the failure counts all the same"
    clock.step(4.9)
    assert queue.get("s0", "w") is None
    clock.step(0.1)
    item = queue.get("s0", "w")
    assert item is not None
    queue.done(item)
    for _ in range(3):
        queue.add_rate_limited("ns/b")
    assert queue.add_rate_limited("ns/b", at_least=0.5) == 8.0  # the backoff is longer


@pytest.mark.parametrize("finish", ["done", "done_and_get"])
def test_a_limiter_kept_outside_redis_is_forgotten_only_when_the_claim_was_held(client, keys, clock, finish):
    publish_ring(client, keys, clock, "s0")
    limiter = Fixed(0.0)
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=None, rate_limiter=limiter)
    queue.add("ns/a")
    item = queue.get("s0", "w1")
    assert item is not None
    queue.add_rate_limited("ns/a")
    clock.step(31.0)
    queue.reap_expired()  # the claim is lost
    with pytest.raises(ClaimLostError):
        getattr(queue, finish)(item, forget=True)
    assert limiter.count == 1
