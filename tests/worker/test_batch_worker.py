"""A worker in batch mode (``batch`` > 1) claims several keys per script call and releases them together,
with the one-key loop's outcomes: every key reconciled, never two at once, dirty keys reconciled again,
failures backed off, and every claim released at the end. Real redis-server, the worker in a thread."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from shard_operator.errors import StorageError
from shard_operator.keys import Keys
from shard_operator.queue import RateLimitingQueue
from shard_operator.reconcile import Request
from shard_operator.sharding import Assigner, Membership
from shard_operator.worker.runner import ShardWorker

pytestmark = pytest.mark.redis

KEYS = Keys.for_controller("batch")
NAMES = [f"ns/k{i}" for i in range(60)]


@pytest.fixture
def client(redis_url: str):
    c = redis.Redis.from_url(redis_url)
    Membership(c, KEYS, "s0").heartbeat()
    Assigner(c, KEYS).rebalance()
    yield c
    c.close()


def test_a_batch_worker_reconciles_every_key_one_at_a_time_and_again_when_dirty(client):
    queue = RateLimitingQueue(client, KEYS, bucket=None)
    queue.add_many(NAMES)
    seen: Counter = Counter()
    active: set[str] = set()
    overlaps: list[str] = []
    lock = threading.Lock()
    readded: set[str] = set()

    def reconcile(request: Request, ctx) -> None:
        with lock:
            if request.key in active:
                overlaps.append(request.key)
            active.add(request.key)
            seen[request.key] += 1
            first = seen[request.key] == 1
        if first and request.key.endswith("7"):  # changed while being reconciled: must run again
            queue.add(request.key)
            readded.add(request.key)
        if request.key == "ns/k3" and seen[request.key] < 3:
            with lock:
                active.discard(request.key)
            raise RuntimeError("flaky")
        time.sleep(0.002)
        with lock:
            active.discard(request.key)

    worker = ShardWorker(RateLimitingQueue(client, KEYS, bucket=None), reconcile, controller="batch", shard="s0",
                         owner="w1", threads=8, batch=8, get_timeout=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(seen[name] >= (2 if name in readded else 1) for name in NAMES) and seen["ns/k3"] >= 3 \
                and queue.num_processing() == 0 and queue.len() == 0 and queue.num_delayed() == 0:
            break
        time.sleep(0.05)
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert not overlaps
    assert all(seen[name] >= 1 for name in NAMES)
    assert readded and all(seen[name] == 2 for name in readded)
    assert seen["ns/k3"] == 3 and queue.num_requeues("ns/k3") == 0, "backed off twice, then forgotten"
    assert queue.num_processing() == 0 and queue.len() == 0


def test_a_lost_claims_key_whose_add_fails_is_added_at_the_next_release_and_the_claimed_keys_still_run(
        client, monkeypatch):
    queue = RateLimitingQueue(client, KEYS, bucket=None)
    queue.add_many(["ns/new"])
    worker = ShardWorker(queue, lambda request, ctx: None, controller="batch", shard="s0", owner="w",
                         threads=2, batch=2)
    lost = queue.get("s0", "old-owner")  # a finished item whose claim the worker no longer holds
    assert lost is not None
    queue.done(lost)
    monkeypatch.setattr(queue, "done_batch_and_claim",
                        lambda items, shard, owner, n, timeout, forget: ([False] * len(items), ["claimed-item"]))
    real_add, calls = queue.add, []

    def failing_add(key: str) -> bool:
        calls.append(key)
        if len(calls) == 1:
            raise StorageError("redis: connection reset")
        return real_add(key)

    monkeypatch.setattr(queue, "add", failing_add)
    assert worker._release_and_claim([(lost, False)], 2, 0.0) == ["claimed-item"]  # not lost to the error
    assert worker._release_and_claim([], 2, 0.0) == ["claimed-item"]
    assert calls == [lost.key, lost.key] and client.hexists(KEYS.dirty, lost.key)
