"""Ingest members against the real API server (Kubernetes >= 1.36, sharded list and watch) and Redis:
while objects change, a range moves from one member to another and back, and afterwards the shared
cache holds exactly the API server's objects and every object's last change reached a handler (I2 at
the ingest stage: a change after which no reconcile would be queued is never left unseen)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client

from shard_operator.cache import CacheWriter
from shard_operator.ingest import IngestMember, Plan, next_plan
from shard_operator.keys import versions_key
from shard_operator.source import Event, EventType, Resource
from shard_operator.testing import ControlPlane
from tests.waiting import eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.redis]

CONFIGMAPS = Resource("", "v1", "configmaps")
KIND = CONFIGMAPS.name


@pytest.fixture(autouse=True)
def sharded(control_plane: ControlPlane) -> None:
    if not control_plane.sharded_list_and_watch:
        pytest.skip(f"Kubernetes {control_plane.kubernetes_version} has no sharded list and watch "
                    "(run with --kubernetes-version 1.37)")


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


class Seen:
    """The handlers of every member: the shared cache write (as the leader's dispatcher does it) and, per
    key, the newest resourceVersion seen of it and of its deletion (the members' overlapping informers
    may deliver an older event after a newer one)."""

    def __init__(self, cache: CacheWriter) -> None:
        self.cache = cache
        self.last: dict[str, int] = {}
        self.deleted: dict[str, int] = {}
        self.lock = threading.Lock()

    def handle(self, event: Event) -> None:
        if event.old is not event.new and not event.listed:
            self.cache.apply(KIND, event)
        version = int(event.resource_version or 0)
        with self.lock:
            seen = self.deleted if event.type is EventType.DELETED else self.last
            seen[event.key] = max(seen.get(event.key, 0), version)


class Churn:
    """Updates and deletes/re-creates the namespace's ConfigMaps in a thread until stopped, and deletes
    the ``doomed`` ones for good, one every tenth step."""

    def __init__(self, api: client.ApiClient, namespace: str, names: list[str], doomed: list[str]) -> None:
        self.core, self.namespace, self.names = client.CoreV1Api(api), namespace, names
        self.doomed = list(doomed)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for step in itertools.count():
            if self.stop_event.is_set():
                return
            name = self.names[step % len(self.names)]
            if step % 10 == 5 and self.doomed:
                self.core.delete_namespaced_config_map(self.doomed.pop(), self.namespace)
            elif step % 7 == 0:
                self.core.delete_namespaced_config_map(name, self.namespace)
                self.core.create_namespaced_config_map(self.namespace, configmap(name, step))
            else:
                self.core.patch_namespaced_config_map(name, self.namespace, {"data": {"step": str(step)}})

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(10)


def configmap(name: str, step: int = 0) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"step": str(step)})


def test_a_range_moving_between_members_under_churn_loses_no_change(api, namespace, redis_url):
    connection = redis.Redis.from_url(redis_url)
    cache = CacheWriter(connection, uid_hashes=True)  # with tombstones: overlapping informers resurrect nothing
    seen = Seen(cache)
    core = client.CoreV1Api(api)
    names = [f"cm-{uuid.uuid4().hex[:6]}-{i}" for i in range(30)]
    doomed = [f"doomed-{uuid.uuid4().hex[:6]}-{i}" for i in range(30)]
    for name in names + doomed:
        core.create_namespaced_config_map(namespace, configmap(name))
    members: dict[str, IngestMember] = {}

    def member(name: str) -> IngestMember:
        return members.setdefault(name, IngestMember(name, CONFIGMAPS, api_client=api, cache=cache,
                                                     handler=seen.handle, namespaces=namespace))

    def settle(plan: Plan, live: list[str]) -> Plan:
        """Apply plans until every live member has listed its target, the plan is a partition and every
        member runs exactly the informers of its entry."""
        deadline = time.monotonic() + 60
        while True:
            for name in live:
                member(name).apply(plan)
            synced = {name: epoch for name in live if (epoch := member(name).synced_epoch) is not None}
            plan = next_plan(plan, live, synced)
            if plan.settled and all(synced.get(name) == plan.epoch and member(name).ranges == plan.watch[name]
                                    for name in live):
                return plan
            assert time.monotonic() < deadline, f"the plan did not settle: {plan}"
            time.sleep(0.05)

    try:
        with Churn(api, namespace, names, doomed) as churn:
            plan = settle(next_plan(None, ["pod-a"], {}), ["pod-a"])
            plan = settle(plan, ["pod-a", "pod-b"])           # the upper half moves to pod-b
            assert member("pod-a").ranges == (plan.targets["pod-a"],)
            assert member("pod-b").ranges == (plan.targets["pod-b"],)
            plan = settle(plan, ["pod-a", "pod-b", "pod-c"])  # three ways
            members.pop("pod-b").stop()
            plan = settle(plan, ["pod-a", "pod-c"])           # pod-b leaves: its range is taken over
            eventually(lambda: not churn.doomed, timeout=30, what="every doomed ConfigMap to be deleted")
        listed = core.list_namespaced_config_map(namespace)
        truth = {f"{namespace}/{item.metadata.name}": int(item.metadata.resource_version) for item in listed.items}

        def converged() -> bool:
            cached = {key.decode(): int(rv) for key, rv in connection.hgetall(versions_key(KIND)).items()
                      if key.decode().startswith(f"{namespace}/")}
            with seen.lock:
                last, deleted = dict(seen.last), set(seen.deleted)
            return (cached == truth and all(last.get(key) == version for key, version in truth.items())
                    and all(f"{namespace}/{name}" in deleted for name in doomed))

        try:
            eventually(converged, timeout=30, what="the cache and the handlers to reach the API server's state")
        except AssertionError:
            cached = {key.decode(): int(rv) for key, rv in connection.hgetall(versions_key(KIND)).items()
                      if key.decode().startswith(f"{namespace}/")}
            with seen.lock:
                last, deleted = dict(seen.last), set(seen.deleted)
            raise AssertionError(
                f"cache - API: {sorted(set(cached.items()) - set(truth.items()))}; "
                f"API - cache: {sorted(set(truth.items()) - set(cached.items()))}; "
                f"last events behind: {[(k, last.get(k), v) for k, v in truth.items() if last.get(k) != v]}; "
                f"deletions unseen: {[n for n in doomed if f'{namespace}/{n}' not in deleted]}") from None
    finally:
        for each in members.values():
            each.stop()
        connection.close()
