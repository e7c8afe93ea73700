"""Delayed keys become ready at their due time, promoted by ``get`` without a dedicated process."""

from __future__ import annotations

import pytest

from shard_operator.queue import DelayingQueue
from tests.queue.backends import publish_ring


@pytest.fixture
def queue(client, keys, clock) -> DelayingQueue:
    publish_ring(client, keys, clock, "s0")
    return DelayingQueue(client, keys, clock=clock)


def drain(queue: DelayingQueue) -> list[str]:
    taken = []
    while (item := queue.get("s0", "w1")) is not None:
        queue.done(item)
        taken.append(item.key)
    return taken


def test_add_after_hands_keys_out_in_due_order_once_due(queue, clock):
    queue.add_after("ns/late", 3.0)
    queue.add_after("ns/early", 1.0)
    queue.add_after("ns/middle", 2.0)
    assert queue.num_delayed() == 3
    assert drain(queue) == []
    clock.step(2.0)
    assert drain(queue) == ["ns/early", "ns/middle"]
    clock.step(1.0)
    assert drain(queue) == ["ns/late"]
    assert queue.num_delayed() == 0


def test_a_promoted_key_is_enqueued_at_its_due_time(queue, clock):
    due = clock() + 1.0
    queue.add_after("ns/a", 1.0)
    clock.step(5.0)
    item = queue.get("s0", "w1")
    assert item is not None and item.enqueued_at == due


def test_add_after_keeps_the_earlier_of_two_due_times(queue, clock):
    assert queue.add_after("ns/a", 5.0)
    assert queue.add_after("ns/a", 1.0)
    assert not queue.add_after("ns/a", 3.0)
    clock.step(1.0)
    assert drain(queue) == ["ns/a"]


def test_add_after_without_delay_adds_at_once(queue):
    assert queue.add_after("ns/a", 0)
    assert queue.num_delayed() == 0
    assert drain(queue) == ["ns/a"]


def test_a_due_key_collapses_with_an_add_made_while_it_waited(queue, clock):
    queue.add_after("ns/a", 1.0)
    queue.add("ns/a")
    clock.step(1.0)
    assert drain(queue) == ["ns/a"]


def test_each_get_promotes_a_bounded_number_of_due_keys(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = DelayingQueue(client, keys, clock=clock, promote_limit=2)
    for i in range(5):
        queue.add_after(f"ns/k{i}", 1.0 + i / 100)
    clock.step(2.0)
    item = queue.get("s0", "w1")
    assert item is not None and item.key == "ns/k0"
    assert queue.num_delayed() == 3 and queue.len() == 1
    assert drain(queue) == ["ns/k1", "ns/k2", "ns/k3", "ns/k4"]


def test_an_idle_get_learns_when_the_next_key_is_due(client, keys, clock):
    publish_ring(client, keys, clock, "s0")
    queue = DelayingQueue(client, keys, clock=clock)
    queue.add_after("ns/a", 0.5)
    reply = queue._get(queue._route, queue._args("s0", "w1", *queue._take_args()))
    assert reply[0] == 0 and float(reply[5]) == pytest.approx(0.5)
