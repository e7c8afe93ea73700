"""Issue 8, recovery and scope: the leader sees Redis again within seconds of its return, and a restart
with fewer namespaces leaves nothing of the dropped ones to reconcile.

Real redis-server, the real LeaderRunner, coordinator, informers and cache writer; the API server is
the in-memory fake of ``tests/source`` (the behaviour under test is the leader's, not the API's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shard_operator import keys as cache_keys
from shard_operator.cache.reader import CacheReader
from shard_operator.cache.scope import Scope, ScopeReader, Selectors
from shard_operator.dispatching import EventDispatcher
from shard_operator.keys import Keys
from shard_operator.manager.leading import LeaderRunner
from shard_operator.queue import RateLimitingQueue
from shard_operator.sharding import Assigner, Membership
from shard_operator.source import Informer, ListPage, Resource
from shard_operator.testing.redis_server import RedisServer
from shard_operator.worker.runner import ShardWorker
from tests.source.fake_api import FakeListWatch
from tests.waiting import eventually

pytestmark = pytest.mark.redis

WIDGETS = Resource("example.com", "v1", "widgets")
CLUSTER_WIDGETS = Resource("example.com", "v1", "clusterwidgets", namespaced=False)


class KeyOfObject:
    def keys_for(self, event: Any) -> list[str]:
        return [event.key]


class Op:
    name, resource, namespaces = "faults", WIDGETS, None
    label_selector = field_selector = None

    def handlers_by_resource(self) -> dict[Resource, list[Any]]:
        return {WIDGETS: [KeyOfObject()]}


class Cfg:
    pod_name, member_ttl, coordinate_interval = "pod-0", 10.0, 0.5
    sharded_ingest = False

    def __init__(self, namespaces: list[str] | None = None, label_selector: str | None = None) -> None:
        self.namespaces, self.label_selector, self.field_selector = namespaces, label_selector, None


class ClusterOp:
    """An operator whose primary resource is cluster-scoped (like Nodes or ClusterRoles)."""

    name, resource, namespaces = "faults", CLUSTER_WIDGETS, None
    label_selector = field_selector = None

    def handlers_by_resource(self) -> dict[Resource, list[Any]]:
        return {CLUSTER_WIDGETS: [KeyOfObject()]}


def leader(client: redis.Redis, api: Any, namespaces: list[str] | None = None,
           operator: Any = None, label_selector: str | None = None) -> LeaderRunner:
    """A LeaderRunner whose informers list and watch the fake API (everything else is the real code; the
    fake applies no selector: give it one through :class:`Selected`)."""
    runner = LeaderRunner(operator or Op(), Cfg(namespaces, label_selector), api_client=None,  # type: ignore[arg-type]
                          client=client)

    def informer(resource: Resource, handlers: list[Any]) -> Informer:
        dispatcher = EventDispatcher(resource.name, handlers, cache=runner._cache, queue=runner._queue,
                                     controller=runner.operator.name)
        # as LeaderRunner._informer: a cluster-scoped resource is listed whole, whatever the namespaces
        return Informer(resource, dispatcher, list_watch=api,
                        namespaces=runner._namespaces() if resource.namespaced else None, watch_timeout=5,
                        on_list=runner._cache.list_hook_for(resource.name))

    runner._informer = informer  # type: ignore[method-assign]
    return runner


def cached(client: redis.Redis, key: str) -> bool:
    return bool(client.hexists(cache_keys.objects_key(WIDGETS.name), key))


@pytest.fixture
def stoppable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of its own that keeps its data across a stop and a start (append-only file)."""
    server = RedisServer({"appendonly": "yes", "appendfsync": "always"}, workdir=tmp_path / "redis")
    with server:
        yield server


@pytest.mark.slow
def test_after_a_redis_outage_without_data_loss_the_leader_converges_within_5_seconds(stoppable_redis):
    client = redis.Redis.from_url(stoppable_redis.url, socket_timeout=1, socket_connect_timeout=1)
    api = FakeListWatch()
    api.put("before")
    runner = leader(client, api)
    runner.start()
    try:
        eventually(lambda: cached(client, "ns1/before"), timeout=10)
        stoppable_redis._process.stop()  # type: ignore[union-attr]  # SIGTERM: the data is on disk
        for name in ("during-1", "during-2"):
            api.put(name)  # the informer fails to write these and backs off
        time.sleep(15)  # the outage: the informer's backoff grows meanwhile (0.8 s doubling)
        stoppable_redis.start()
        returned = time.monotonic()
        eventually(lambda: cached(client, "ns1/during-1") and cached(client, "ns1/during-2"), timeout=30)
        took = time.monotonic() - returned
        assert took < 5, f"converged {took:.1f}s after Redis returned"
        assert cached(client, "ns1/before")  # kept: no relist from an empty cache was needed
    finally:
        runner.stop()
        client.close()


def test_a_restart_with_fewer_namespaces_leaves_nothing_of_the_dropped_ones_to_reconcile(redis_url):
    client = redis.Redis.from_url(redis_url)
    api = FakeListWatch()
    api.put("kept", namespace="a")
    api.put("dropped", namespace="b")
    first = leader(client, api, ["a", "b"])
    first.start()
    eventually(lambda: cached(client, "a/kept") and cached(client, "b/dropped"), timeout=10)
    first.stop()

    second = leader(client, api, ["a"])  # the restart with a narrower --namespace
    second.start()
    try:
        eventually(lambda: second.has_synced, timeout=10)
        assert cached(client, "a/kept") and not cached(client, "b/dropped")
        assert Scope.load(client, "faults").namespaces == {"a"}
        # What a worker does with every key it may still find queued from the first run: the ones
        # outside the scope are skipped, so nothing in namespace b is reconciled or written again.
        reader = ScopeReader(client, "faults")
        written = [key for key in ("a/kept", "b/dropped") if reader.contains(key)]
        assert written == ["a/kept"]
    finally:
        second.stop()
        client.close()


class Selected:
    """The fake API seen through a label selector, as the API server applies one (``tier=gold``)."""

    def __init__(self, api: FakeListWatch, labels: dict[str, str]) -> None:
        self._api, self._labels = api, labels

    def _matches(self, obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(labels.get(name) == value for name, value in self._labels.items())

    def list(self, namespace: str | None, *, limit: int, continue_token: str | None) -> ListPage:
        page = self._api.list(namespace, limit=limit, continue_token=continue_token)
        return ListPage([o for o in page.items if self._matches(o)], page.resource_version, page.continue_token)

    def watch(self, namespace: str | None, *, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        for event in self._api.watch(namespace, resource_version=resource_version, timeout_seconds=timeout_seconds):
            if event["type"] in ("BOOKMARK", "ERROR") or self._matches(event["object"]):
                yield event

    def interrupt(self) -> None:
        self._api.interrupt()


def worker_of(client: redis.Redis, seen: dict[str, dict[str, Any] | None],
              selectors: Selectors | None = None) -> ShardWorker:
    """A worker of shard s0 that records in ``seen`` what each reconcile read of its object."""
    keys = Keys.for_controller("faults")
    Membership(client, keys, "s0").heartbeat()
    Assigner(client, keys).rebalance()
    return ShardWorker(RateLimitingQueue(client, keys, bucket=None),
                       lambda request, ctx: seen.update({request.key: ctx.get(request)}),
                       controller="faults", shard="s0", owner="w1", get_timeout=0.05,
                       cache=CacheReader(client), resource=WIDGETS, selectors=selectors)


def drain(client: redis.Redis) -> dict[str, dict[str, Any] | None]:
    """Run a worker of shard s0 until the queue is empty; returns what each reconcile read of its object."""
    keys = Keys.for_controller("faults")
    seen: dict[str, dict[str, Any] | None] = {}
    worker = worker_of(client, seen)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        eventually(lambda: seen and client.hlen(keys.dirty) == 0 and client.hlen(keys.processing) == 0,
                   timeout=10, what="an empty queue")
    finally:
        worker.stop()
        thread.join(timeout=10)
    return seen


def test_a_restart_with_a_narrower_selector_reconciles_a_still_queued_unselected_key_only_as_deleted(redis_url):
    client = redis.Redis.from_url(redis_url)
    keys = Keys.for_controller("faults")
    api = FakeListWatch()
    api.put("gold", metadata={"labels": {"tier": "gold"}})
    api.put("plain-done")
    api.put("plain-queued")
    first = leader(client, api)
    first.start()
    try:
        eventually(lambda: all(cached(client, f"ns1/{name}") for name in ("gold", "plain-done", "plain-queued")),
                   timeout=10)
    finally:
        first.stop()
    assert set(drain(client)) == {"ns1/gold", "ns1/plain-done", "ns1/plain-queued"}
    RateLimitingQueue(client, keys, bucket=None).add("ns1/plain-queued")  # a late change

    # The restart with -l tier=gold: this pod's worker runs before its leader has listed anything, while
    # the cache still holds the previous run's copy of plain-queued, which tier=gold does not select.
    seen: dict[str, dict[str, Any] | None] = {}
    worker = worker_of(client, seen, Selectors.of("tier=gold", None))
    thread = threading.Thread(target=worker.run)
    thread.start()
    second = leader(client, Selected(api, {"tier": "gold"}), label_selector="tier=gold")
    try:
        # Taken and put back for later, not reconciled with the previous run's cached copy.
        eventually(lambda: client.zscore(keys.delayed, "ns1/plain-queued") is not None, timeout=10)
        assert seen == {} and cached(client, "ns1/plain-queued")
        second.start()
        eventually(lambda: second.has_synced, timeout=10)
        # The first list under the new selector removed the unselected objects from the cache...
        assert cached(client, "ns1/gold")
        assert not cached(client, "ns1/plain-done") and not cached(client, "ns1/plain-queued")
        # ...and then the leader published that it listed with tier=gold: the waiting key is reconciled.
        eventually(lambda: Scope.load(client, "faults").listed == Selectors.of("tier=gold", None), timeout=10)
        eventually(lambda: {"ns1/gold", "ns1/plain-queued"} <= set(seen) and client.hlen(keys.dirty) == 0
                   and client.hlen(keys.processing) == 0 and client.zcard(keys.delayed) == 0, timeout=15)
    finally:
        worker.stop()
        thread.join(timeout=10)
        second.stop()
        client.close()
    # The new leader queues only the objects it lists. A key of the old selector still queued from the
    # previous run is reconciled once, as a deletion (ctx.get() is None), as in client-go when an object
    # leaves a selector: a reconciler that writes only objects it can read writes nothing outside it.
    assert set(seen) == {"ns1/gold", "ns1/plain-queued"}
    assert seen["ns1/plain-queued"] is None and seen["ns1/gold"] is not None


def test_a_cluster_scoped_primary_run_with_namespaces_has_its_keys_in_scope(redis_url):
    client = redis.Redis.from_url(redis_url)
    api = FakeListWatch()
    api.put("c1", namespace=None)
    runner = leader(client, api, ["a"], operator=ClusterOp())  # --namespace a, a cluster-scoped primary
    runner.start()
    try:
        eventually(lambda: runner.has_synced, timeout=10)
        assert client.hexists(cache_keys.objects_key(CLUSTER_WIDGETS.name), "c1")
        # --namespace cannot select a cluster-scoped object: its key is reconciled, not silently skipped
        assert ScopeReader(client, "faults").contains("c1")
        assert not ScopeReader(client, "faults").contains("b/x")
    finally:
        runner.stop()
        client.close()


def test_a_scope_contains_keys_of_its_namespaces_and_every_cluster_scoped_key():
    scope = Scope.of(["a", "c"])
    assert scope.contains("a/x") and scope.contains("c/y") and scope.contains("cluster-scoped")
    assert not scope.contains("b/x")
    assert Scope().contains("b/x") and Scope().contains("cluster-scoped")


def test_a_worker_without_selectors_never_waits_for_the_leaders_list_but_one_with_selectors_does():
    not_listed_yet = Scope(frozenset(["a"]), listed=None, tracks_selectors=True)
    listed_gold = Scope(frozenset(["a"]), listed=Selectors.of("tier=gold", None), tracks_selectors=True)
    everything = Selectors.of(None, None)
    gold = Selectors.of("tier=gold", None)
    # no selector: every object is selected, so no cached copy is out of scope and nothing needs waiting
    assert not_listed_yet.lists_with(everything) and listed_gold.lists_with(everything)
    assert not not_listed_yet.lists_with(gold) and listed_gold.lists_with(gold)
    assert not listed_gold.lists_with(Selectors.of("tier=gold", "status.phase=Running"))
    assert Scope.of(["a"]).lists_with(gold)  # an older leader's record without selectors: as before
