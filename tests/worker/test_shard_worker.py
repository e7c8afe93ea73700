"""A shard worker applies each outcome to the queue, renews claims of long reconciles, and lets go
of a key whose claim it lost (writing nothing more and adding the key again). Runs against the real
redis-server with the worker in a thread."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis

from shard_operator.cache.reader import CacheReader
from shard_operator.cache.scope import Scope, Selectors
from shard_operator.errors import TemporaryError, TerminalError
from shard_operator.keys import Keys
from shard_operator.queue import ManualClock, RateLimitingQueue
from shard_operator.reconcile import Request, Result
from shard_operator.sharding import Assigner, Membership
from shard_operator.source import Resource
from shard_operator.worker.runner import SELECTOR_WAIT, ShardWorker
from tests.waiting import eventually

pytestmark = pytest.mark.redis

KEYS = Keys.for_controller("unit")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    Membership(c, KEYS, "s0").heartbeat()
    Assigner(c, KEYS).rebalance()
    yield c
    c.close()


@contextlib.contextmanager
def running_worker(client: redis.Redis, reconcile: Callable, *, claim_ttl: float = 30.0,
                   clock: ManualClock | None = None, monotonic: Callable[[], float] = time.monotonic,
                   ) -> Iterator[Counter]:
    """Run a one-thread worker inside the block; yields how often each key was reconciled so far.

    With ``clock``, the queue's scripts read that manual clock: a delayed key comes back only when the
    test steps it, so nothing here depends on how fast a loaded machine runs the worker thread."""
    seen: Counter = Counter()

    def counting(request: Request, ctx) -> Result | None:
        seen[request.key] += 1
        return reconcile(request, ctx, seen[request.key])

    queue = RateLimitingQueue(client, KEYS, bucket=None, claim_ttl=claim_ttl, clock=clock)
    worker = ShardWorker(queue, counting, controller="unit", shard="s0", owner="w1", get_timeout=0.05,
                         monotonic=monotonic)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        yield seen
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def queue_of(client: redis.Redis, clock: ManualClock | None = None) -> RateLimitingQueue:
    return RateLimitingQueue(client, KEYS, bucket=None, clock=clock)


def idle(client: redis.Redis) -> bool:
    """Nothing queued, claimed or delayed: no key can be handed out again without a new add."""
    return not (client.hlen(KEYS.dirty) or client.hlen(KEYS.processing) or client.zcard(KEYS.delayed))


def delayed_by(client: redis.Redis, clock: ManualClock, key: str) -> float | None:
    """How long after the manual clock's now ``key`` is due (None: not delayed)."""
    due = client.zscore(KEYS.delayed, key)
    return None if due is None else round(due - clock(), 4)


def test_a_failing_key_is_retried_with_backoff_and_forgotten_after_success(client):
    clock = ManualClock()
    queue_of(client).add("ns/flaky")
    with running_worker(client, lambda r, ctx, n: (_ for _ in ()).throw(RuntimeError("boom")) if n < 4 else None,
                        clock=clock) as seen:
        for failures, backoff in enumerate((0.005, 0.01, 0.02), start=1):  # doubling from 5 ms
            eventually(lambda f=failures: seen["ns/flaky"] == f and delayed_by(client, clock, "ns/flaky"),
                       timeout=10, what=f"failure {failures} to be delayed")
            assert delayed_by(client, clock, "ns/flaky") == backoff
            clock.step(backoff)
        eventually(lambda: seen["ns/flaky"] == 4 and idle(client), timeout=10, what="the success")
    assert seen["ns/flaky"] == 4  # nothing after the success
    assert queue_of(client).num_requeues("ns/flaky") == 0


def test_a_terminal_error_is_not_retried(client):
    queue_of(client).add("ns/broken")

    def reconcile(request, ctx, n):
        raise TerminalError("invalid spec")

    with running_worker(client, reconcile) as seen:
        eventually(lambda: seen["ns/broken"] == 1 and idle(client), timeout=10)
    assert seen["ns/broken"] == 1  # done, not delayed: it cannot come back without a new add
    assert queue_of(client).num_requeues("ns/broken") == 0


def test_requeue_after_and_temporary_error_delay_bring_the_key_back_after_the_delay(client):
    clock = ManualClock()
    queue_of(client).add_many(["ns/poll", "ns/wait"])

    def reconcile(request, ctx, n):
        if n == 1 and request.key == "ns/poll":
            return Result(requeue_after=0.3)
        if n == 1:
            raise TemporaryError("not yet", delay=0.3)
        return None

    with running_worker(client, reconcile, clock=clock) as seen:
        eventually(lambda: seen == {"ns/poll": 1, "ns/wait": 1} and client.zcard(KEYS.delayed) == 2, timeout=10)
        assert delayed_by(client, clock, "ns/poll") == delayed_by(client, clock, "ns/wait") == 0.3
        clock.step(0.29)
        assert queue_of(client, clock).get("s0", "probe", timeout=0) is None  # 10 ms early: neither is handed out
        clock.step(0.01)
        eventually(lambda: seen == {"ns/poll": 2, "ns/wait": 2} and idle(client), timeout=10)
    assert queue_of(client).num_requeues("ns/wait") == 0  # the success after the retry forgot it


def test_a_429_is_not_handed_out_again_before_its_retry_after(client):
    from shard_operator.errors import TooManyRequestsError

    clock = ManualClock()
    queue_of(client).add("ns/throttled")

    def reconcile(request, ctx, n):
        if n == 1:
            raise TooManyRequestsError("the server is busy", retry_after=0.3)
        return None

    with running_worker(client, reconcile, clock=clock) as seen:
        eventually(lambda: seen["ns/throttled"] == 1 and delayed_by(client, clock, "ns/throttled"), timeout=10)
        assert delayed_by(client, clock, "ns/throttled") == 0.3  # Retry-After, not the 5 ms backoff
        clock.step(0.29)
        assert queue_of(client, clock).get("s0", "probe", timeout=0) is None  # 10 ms early: not handed out
        clock.step(0.01)
        eventually(lambda: seen["ns/throttled"] == 2 and idle(client), timeout=10)
    assert queue_of(client).num_requeues("ns/throttled") == 0  # the success forgot the failure


def test_a_long_reconcile_keeps_its_claim_while_expired_claims_are_reaped(client):
    clock = ManualClock()
    fake_now = [0.0]  # the worker's monotonic clock, moved with the manual one
    reaper_queue = queue_of(client, clock)
    queue_of(client).add("ns/slow")
    started, finish = threading.Event(), threading.Event()

    def reconcile(request, ctx, n):
        started.set()
        assert finish.wait(30)

    with running_worker(client, reconcile, claim_ttl=0.3, clock=clock, monotonic=lambda: fake_now[0]) as seen:
        assert started.wait(10)
        for _ in range(5):  # one simulated second, more than three claim TTLs, in steps of 0.2 s
            deadline = client.zscore(KEYS.deadlines, "ns/slow")
            clock.step(0.2)
            fake_now[0] += 0.2
            # the renewer (every claim_ttl / 3) moves the deadline to the new now + TTL before it passes
            eventually(lambda d=deadline: client.zscore(KEYS.deadlines, "ns/slow") > d, timeout=10,
                       what="a renewal")
            assert client.zscore(KEYS.deadlines, "ns/slow") >= clock() + 0.29
            assert reaper_queue.reap_expired() == 0
        finish.set()
        eventually(lambda: idle(client), timeout=10)
    assert seen["ns/slow"] == 1


def test_a_worker_that_lost_its_claim_leaves_the_key_to_its_new_owner(client):
    queue_of(client).add("ns/stolen")

    def reconcile(request, ctx, n):
        # Another worker took the key over (as after a reap): the token in Redis is no longer ours.
        client.hset(KEYS.processing, request.key, "someone-else")
        eventually(lambda: ctx.client.claim.lost, timeout=10, what="the renewer to notice")
        raise RuntimeError("this outcome must be dropped")

    # Both clocks stand still: the claim can be lost only by the renewer finding another owner's token.
    with running_worker(client, reconcile, claim_ttl=0.3, clock=ManualClock(), monotonic=lambda: 0.0) as seen:
        eventually(lambda: seen["ns/stolen"] == 1, timeout=10)  # the stop lets the reconcile's outcome finish
    assert seen["ns/stolen"] == 1
    assert client.hget(KEYS.processing, "ns/stolen") == b"someone-else"
    assert client.hexists(KEYS.dirty, "ns/stolen")  # added again: its new owner's done hands it out once more
    assert queue_of(client).num_requeues("ns/stolen") == 0  # no retry was scheduled by the old owner


def test_a_temporary_error_without_a_real_delay_still_backs_off(client):
    clock = ManualClock()
    queue_of(client).add("ns/eager")

    def reconcile(request, ctx, n):
        raise TemporaryError("again", delay=0)

    with running_worker(client, reconcile, clock=clock) as seen:
        # delay=0 is not taken as "at once": each try waits the key's backoff, doubling from 5 ms
        for tries, backoff in enumerate((0.005, 0.01, 0.02, 0.04, 0.08), start=1):
            eventually(lambda t=tries: seen["ns/eager"] == t and delayed_by(client, clock, "ns/eager"),
                       timeout=10, what=f"try {tries} to be delayed")
            assert delayed_by(client, clock, "ns/eager") == backoff
            clock.step(backoff)
        eventually(lambda: seen["ns/eager"] == 6, timeout=10)
    assert queue_of(client).num_requeues("ns/eager") == seen["ns/eager"] == 6


def test_each_reconcile_gets_a_context_of_its_own_request_and_a_missing_part_says_which(client):
    from shard_operator import Context, NoJobQueueError
    from shard_operator.errors import ConfigError

    seen: dict[str, tuple] = {}

    def reconcile(request: Request, ctx: Context) -> Result | None:
        with pytest.raises(ConfigError, match=r"ctx\.cache\.get"):
            ctx.cache.get(None, request.key)
        with pytest.raises(NoJobQueueError):
            ctx.job("anything", generation=1)
        seen[request.key] = (ctx.request, ctx.controller, ctx.shard)
        return None

    queue_of(client).add_many(["ns/a", "ns/b"])
    queue = RateLimitingQueue(client, KEYS, bucket=None)
    worker = ShardWorker(queue, reconcile, controller="unit", shard="s0", owner="w1", get_timeout=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    thread.join(timeout=10)
    assert seen == {"ns/a": (Request("ns", "a"), "unit", "s0"), "ns/b": (Request("ns", "b"), "unit", "s0")}


def test_a_reconcile_paused_past_its_claim_writes_nothing_and_its_key_is_reconciled_again(client):
    from shard_operator.client import EventRecorder
    from shard_operator.errors import ClaimLost
    from shard_operator.testing.fake_api import FakeCache, FakeClient, ObjectStore

    widgets = Resource("example.shard-operator.dev", "v1", "widgets")
    store = ObjectStore()
    store.put(widgets, {"metadata": {"name": "paused", "namespace": "ns"}, "spec": {"size": 1}})
    fake_now = [1000.0]  # the claims' monotonic clock; the reconcile moves it as a SIGSTOP would
    outcomes: list[str] = []

    def reconcile(request: Request, ctx) -> Result | None:
        obj = ctx.get(request)
        if not outcomes:
            fake_now[0] += 60.0  # paused for a minute: far past the 30 s claim
        try:
            ctx.client.patch(widgets, obj, {"metadata": {"labels": {"try": str(len(outcomes))}}},
                             unconditional=True)
            ctx.recorder.normal(obj, "Patched", "patched")
            outcomes.append("written")
        except ClaimLost:
            outcomes.append("refused")
            raise
        return None

    queue_of(client).add("ns/paused")
    fake = FakeClient(store)
    queue = RateLimitingQueue(client, KEYS, bucket=None)
    worker = ShardWorker(queue, reconcile, controller="unit", shard="s0", owner="w1", get_timeout=0.05,
                         cache=FakeCache(store), client=fake, recorder=EventRecorder(fake, "unit", instance="t"),
                         resource=widgets, monotonic=lambda: fake_now[0])
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 20
    while len(outcomes) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    thread.join(timeout=10)
    assert outcomes == ["refused", "written"]  # the key came back (an add) and its next reconcile wrote
    assert [w.body["metadata"]["labels"] for w in store.writes] == [{"try": "1"}]
    assert [e["reason"] for e in store.of(Resource("", "v1", "events")).values()] == ["Patched"]
    assert not client.hexists(KEYS.processing, "ns/paused")
    assert queue_of(client).num_requeues("ns/paused") == 0  # a lost claim is not a failure of the key


def test_a_key_outside_the_published_scope_is_done_without_a_reconcile(client):
    from shard_operator.cache.scope import Scope

    Scope.of(["kept"]).publish(client, "unit")
    queue_of(client).add_many(["dropped/a", "kept/b"])
    with running_worker(client, lambda request, ctx, n: None) as seen:
        eventually(lambda: idle(client), timeout=10)  # dropped/a is done, not stuck
    assert seen == Counter({"kept/b": 1})


def test_a_key_outside_the_workers_own_namespaces_is_not_reconciled_while_redis_has_an_older_wider_scope(client):
    from shard_operator.cache.scope import Scope

    # A restart with --namespace a: until this run's leader wins the Lease, Redis holds the old run's scope.
    Scope.of(["a", "b"]).publish(client, "unit")
    queue_of(client).add_many(["b/dropped", "a/kept", "cluster-scoped"])
    seen: Counter = Counter()
    queue = RateLimitingQueue(client, KEYS, bucket=None)
    worker = ShardWorker(queue, lambda request, ctx: seen.update([request.key]), controller="unit", shard="s0",
                         owner="w1", get_timeout=0.05, namespaces=["a"])
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        eventually(lambda: client.hlen(KEYS.dirty) == 0 and client.hlen(KEYS.processing) == 0, timeout=10)
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert seen == Counter({"a/kept": 1, "cluster-scoped": 1})  # b/dropped was done without a reconcile


@pytest.mark.parametrize("batch", [1, 4], ids=["one-key loop", "batch loop"])
@pytest.mark.parametrize("published", [Selectors.of("app=old", None), None], ids=["old selectors", "not listed yet"])
def test_a_key_waits_unreconciled_until_the_leader_publishes_its_first_list_with_the_workers_selectors(
        client, caplog, batch, published):
    # A restart with -l app=new: until the new leader's first list is in the cache, the cache may still hold
    # the previous run's copy of an object app=new no longer selects, and its key may still be queued.
    clock = ManualClock()
    Scope(None, published, tracks_selectors=True).publish(client, "unit")
    queue_of(client, clock).add("ns/unselected")
    seen: dict[str, object] = {}
    queue = RateLimitingQueue(client, KEYS, bucket=None, clock=clock)
    worker = ShardWorker(queue, lambda request, ctx: seen.update({request.key: ctx.get(request)}),
                         controller="unit", shard="s0", owner="w1", threads=batch, batch=batch, get_timeout=0.05,
                         cache=CacheReader(client), resource=Resource("example.com", "v1", "widgets"),
                         selectors=Selectors.of("app=new", ""))
    thread = threading.Thread(target=worker.run)
    caplog.set_level(logging.INFO, logger="shard_operator.worker.runner")
    thread.start()
    try:
        for _ in range(2):  # taken, not reconciled, and back in the queue, due SELECTOR_WAIT later
            eventually(lambda: delayed_by(client, clock, "ns/unselected") == SELECTOR_WAIT
                       and not client.hlen(KEYS.dirty) and not client.hlen(KEYS.processing), timeout=10)
            assert seen == {}
            clock.step(SELECTOR_WAIT)  # due: handed out again (and put back again, due later than now)
        waiting = [r for r in caplog.records if "waits for the leader's first list" in r.getMessage()]
        assert len(waiting) == 1 and "app=new" in waiting[0].getMessage()  # one line per interval, not per key

        # The new leader's first list is in the cache (without the unselected object): the key is reconciled,
        # as a deletion.
        Scope(None, Selectors.of("app=new", None), tracks_selectors=True).publish(client, "unit")

        def reconciled() -> bool:
            clock.step(SELECTOR_WAIT)  # each round the worker's scope reader may still hold the old record
            return "ns/unselected" in seen

        eventually(reconciled, timeout=10, interval=0.2)
        eventually(lambda: idle(client), timeout=10)
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert seen == {"ns/unselected": None}
    assert queue.num_requeues("ns/unselected") == 0  # waiting is not a failure of the key


def test_a_scope_record_without_selectors_from_an_older_leader_lets_the_worker_reconcile(client):
    client.set(KEYS.scope, json.dumps({"namespaces": None}))  # what a leader before selector scopes wrote
    assert Scope.load(client, "unit").lists_with(Selectors.of("app=new", None))
    queue_of(client).add("ns/a")
    seen: Counter = Counter()
    worker = ShardWorker(RateLimitingQueue(client, KEYS, bucket=None), lambda request, ctx: seen.update([request.key]),
                         controller="unit", shard="s0", owner="w1", get_timeout=0.05,
                         selectors=Selectors.of("app=new", None))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        eventually(lambda: seen and idle(client), timeout=10)
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert seen == Counter({"ns/a": 1})
