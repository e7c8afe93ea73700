"""Issue 8, recovery and scope: the leader sees Redis again within seconds of its return, and a restart
with fewer namespaces leaves nothing of the dropped ones to reconcile.

Real redis-server, the real LeaderRunner, coordinator, informers and cache writer; the API server is
the in-memory fake of ``tests/source`` (the behaviour under test is the leader's, not the API's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shard_operator import keys as cache_keys
from shard_operator.cache.scope import Scope, ScopeReader
from shard_operator.dispatching import EventDispatcher
from shard_operator.manager.leading import LeaderRunner
from shard_operator.source import Informer, Resource
from shard_operator.testing.redis_server import RedisServer
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

    def handlers_by_resource(self) -> dict[Resource, list[Any]]:
        return {WIDGETS: [KeyOfObject()]}


class Cfg:
    pod_name, member_ttl, coordinate_interval = "pod-0", 10.0, 0.5

    def __init__(self, namespaces: list[str] | None = None) -> None:
        self.namespaces = namespaces


class ClusterOp:
    """An operator whose primary resource is cluster-scoped (like Nodes or ClusterRoles)."""

    name, resource, namespaces = "faults", CLUSTER_WIDGETS, None

    def handlers_by_resource(self) -> dict[Resource, list[Any]]:
        return {CLUSTER_WIDGETS: [KeyOfObject()]}


def leader(client: redis.Redis, api: FakeListWatch, namespaces: list[str] | None = None,
           operator: Any = None) -> LeaderRunner:
    """A LeaderRunner whose informers list and watch the fake API (everything else is the real code)."""
    runner = LeaderRunner(operator or Op(), Cfg(namespaces), api_client=None, client=client)  # type: ignore[arg-type]

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
        assert Scope.load(client, "faults") == Scope.of(["a"])
        # What a worker does with every key it may still find queued from the first run: the ones
        # outside the scope are skipped, so nothing in namespace b is reconciled or written again.
        reader = ScopeReader(client, "faults")
        written = [key for key in ("a/kept", "b/dropped") if reader.contains(key)]
        assert written == ["a/kept"]
    finally:
        second.stop()
        client.close()


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
