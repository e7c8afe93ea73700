"""The base work queue keeps client-go's semantics across instances sharing one Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from shard_operator.errors import ClaimLostError, ShutDownError, StorageError
from shard_operator.keys import Keys
from shard_operator.queue import Item, WorkQueue
from tests.queue.backends import publish_ring


@pytest.fixture
def queue(client, keys, clock) -> WorkQueue:
    publish_ring(client, keys, clock, "s0")
    return WorkQueue(client, keys, clock=clock, claim_ttl=30.0)


def take(queue: WorkQueue, owner: str = "w1") -> Item:
    item = queue.get("s0", owner)
    assert item is not None
    return item


def test_an_added_key_is_handed_out_once_with_the_time_it_was_enqueued(queue, clock):
    enqueued = clock()
    assert queue.add("ns/a")
    clock.step(2.5)
    item = take(queue)
    assert (item.key, item.shard, item.owner) == ("ns/a", "s0", "w1")
    assert item.enqueued_at == enqueued
    assert item.claimed_at == enqueued + 2.5
    assert item.deadline == enqueued + 2.5 + 30.0
    assert queue.get("s0", "w1") is None
    assert queue.num_processing() == 1


def test_many_adds_of_a_waiting_key_collapse_into_one_get(queue):
    assert queue.add("ns/a")
    assert not any(queue.add("ns/a") for _ in range(50))
    assert queue.add_many(["ns/a", "ns/b", "ns/b"]) == 1
    assert queue.len() == 2
    assert {take(queue).key, take(queue).key} == {"ns/a", "ns/b"}
    assert queue.get("s0", "w1") is None


def test_keys_are_handed_out_in_the_order_they_were_added(queue):
    queue.add_many([f"ns/k{i}" for i in range(5)])
    assert [take(queue).key for _ in range(5)] == [f"ns/k{i}" for i in range(5)]


def test_key_added_while_processing_is_requeued_once_on_done(queue):
    queue.add("ns/a")
    item = take(queue)
    assert queue.add("ns/a")
    assert not queue.add("ns/a")
    assert queue.get("s0", "w2") is None, "a key being processed is never handed out again"
    queue.done(item)
    again = take(queue, "w2")
    assert again.key == "ns/a"
    queue.done(again)
    assert queue.get("s0", "w2") is None
    assert queue.len() == 0 and queue.num_processing() == 0


def test_key_not_added_while_processing_is_gone_after_done(queue):
    queue.add("ns/a")
    queue.done(take(queue))
    assert queue.get("s0", "w1") is None


def test_done_with_a_lost_claim_raises_and_changes_nothing(queue):
    queue.add("ns/a")
    item = take(queue)
    forged = Item(item.key, "w9:999", item.shard, "w9", item.enqueued_at, item.claimed_at, item.deadline)
    with pytest.raises(ClaimLostError):
        queue.done(forged)
    assert queue.num_processing() == 1
    queue.done(item)
    assert queue.num_processing() == 0


def test_expired_claim_is_queued_again_and_its_dead_owner_loses_it(queue, clock):
    queue.add("ns/a")
    dead = take(queue, "dead")
    clock.step(29.0)
    assert queue.reap_expired() == 0
    clock.step(2.0)
    assert queue.reap_expired() == 1
    assert queue.reap_expired() == 0
    alive = take(queue, "alive")
    assert alive.key == "ns/a" and alive.token != dead.token
    with pytest.raises(ClaimLostError):
        queue.done(dead)
    with pytest.raises(ClaimLostError):
        queue.renew(dead)
    queue.done(alive)
    assert queue.num_processing() == 0 and queue.len() == 0


def test_renewed_claim_outlives_its_first_deadline(queue, clock):
    queue.add("ns/a")
    item = take(queue)
    clock.step(20.0)
    assert queue.renew(item) == clock() + 30.0 == item.deadline
    clock.step(20.0)
    assert queue.reap_expired() == 0
    queue.done(item)


def test_done_and_get_releases_one_key_and_claims_the_next(queue):
    queue.add_many(["ns/a", "ns/b"])
    first = take(queue)
    queue.add("ns/a")
    second = queue.done_and_get(first)
    assert second is not None and second.key == "ns/b"
    third = queue.done_and_get(second)
    assert third is not None and third.key == "ns/a"
    assert queue.done_and_get(third) is None
    with pytest.raises(ClaimLostError):
        queue.done_and_get(third)


def test_get_waits_up_to_its_timeout_when_nothing_is_ready(queue):
    started = time.monotonic()
    assert queue.get("s0", "w1", timeout=0.12) is None
    assert 0.1 <= time.monotonic() - started < 1.0


def test_a_waiting_get_wakes_up_when_a_key_is_added(connect, keys, clock):
    queue = WorkQueue(connect(), keys, clock=clock, max_wait=2.0)
    publish_ring(queue.client, keys, clock, "s0")
    producer = WorkQueue(connect(), keys, clock=clock)
    timer = threading.Timer(0.05, producer.add, args=("ns/a",))
    started = time.monotonic()
    timer.start()
    item = queue.get("s0", "w1", timeout=5.0)
    timer.join()
    assert item is not None and item.key == "ns/a"
    assert time.monotonic() - started < 1.0


def test_get_never_hands_a_key_to_two_owners(connect, keys, clock):
    publish_ring(connect(), keys, clock, "s0")
    queues = [WorkQueue(connect(), keys, clock=clock, max_wait=0.005) for _ in range(4)]
    queues[0].add_many([f"ns/k{i}" for i in range(20)])
    active: set[str] = set()
    handled: list[str] = []
    violations: list[str] = []
    lock = threading.Lock()

    def work(queue: WorkQueue, owner: str) -> None:
        for _ in range(60):
            item = queue.get("s0", owner, timeout=0.02)
            if item is None:
                continue
            with lock:
                if item.key in active:
                    violations.append(item.key)
                active.add(item.key)
                handled.append(item.key)
            queue.add(item.key)  # a change arrives while the key is processed
            time.sleep(0.0005)
            with lock:
                active.discard(item.key)
            queue.done(item)

    threads = [threading.Thread(target=work, args=(q, f"w{n}")) for n, q in enumerate(queues)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not violations
    assert len(handled) > 20


def test_len_counts_the_queued_keys_of_a_shard_and_of_the_ring(client, keys, clock):
    publish_ring(client, keys, clock, "s0", "s1")
    queue = WorkQueue(client, keys, clock=clock)
    queue.add_many([f"ns/k{i}" for i in range(40)])
    assert queue.len("s0") + queue.len("s1") == queue.len() == 40
    assert 0 < queue.len("s0") < 40


def test_shut_down_stops_get_and_ignores_adds_but_done_still_works(queue):
    queue.add("ns/a")
    item = take(queue)
    queue.shut_down()
    assert queue.shutting_down
    with pytest.raises(ShutDownError):
        queue.get("s0", "w1", timeout=1.0)
    assert not queue.add("ns/b")
    queue.done(item)
    assert queue.num_processing() == 0


def test_shut_down_wakes_a_waiting_get(queue):
    threading.Timer(0.05, queue.shut_down).start()
    with pytest.raises(ShutDownError):
        queue.get("s0", "w1", timeout=None)


def test_shut_down_with_drain_waits_for_the_items_it_handed_out(queue):
    queue.add_many(["ns/a", "ns/b"])
    first, second = take(queue), take(queue)
    queue.done(first)
    timer = threading.Timer(0.05, queue.done, args=(second,))
    timer.start()
    assert queue.shut_down_with_drain(timeout=5.0)
    timer.join()
    with pytest.raises(ShutDownError):
        queue.get("s0", "w1")


def test_shut_down_with_drain_gives_up_after_its_timeout(queue):
    queue.add("ns/a")
    item = take(queue)
    assert not queue.shut_down_with_drain(timeout=0.05)
    queue.done(item)
    assert queue.shut_down_with_drain(timeout=0.05)


def test_reaping_is_bounded_per_call(queue, clock):
    queue.add_many([f"ns/k{i}" for i in range(5)])
    for _ in range(5):
        take(queue)
    clock.step(31.0)
    assert queue.reap_expired(limit=3) == 3
    assert queue.reap_expired(limit=3) == 2
    assert queue.len() == 5 and queue.num_processing() == 0


def test_an_unreachable_redis_raises_storage_error():
    client = redis.Redis(port=1, socket_connect_timeout=0.2, retry=None)
    queue = WorkQueue(client, Keys.for_controller("widgets"))
    with pytest.raises(StorageError):
        queue.add("ns/a")
    with pytest.raises(StorageError):
        queue.get("s0", "w1")
    client.close()
