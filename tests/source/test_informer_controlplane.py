"""The informer against a real kube-apiserver, feeding the shared cache in a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kubernetes import client

from shard_operator.cache import CacheReader, CacheWriter
from shard_operator.client import install_crd, open_crd
from shard_operator.source import Backoff, Event, Informer, Resource
from shard_operator.testing import ControlPlane
from tests.waiting import eventually as _eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.redis]

GROUP, VERSION, PLURAL, KIND = "source.shard-operator.dev", "v1", "gadgets", "Gadget"
GADGETS = Resource(GROUP, VERSION, PLURAL)


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def objects(api: client.ApiClient) -> client.CustomObjectsApi:
    install_crd(api, open_crd(GADGETS, KIND))
    return client.CustomObjectsApi(api)


@pytest.fixture
def cache(redis_url: str) -> Iterator[tuple[CacheWriter, CacheReader]]:
    connection = redis.Redis.from_url(redis_url)
    yield CacheWriter(connection), CacheReader(connection)
    connection.close()


@pytest.fixture
def run_informer(api: client.ApiClient) -> Iterator[Callable[..., Informer]]:
    started: list[Informer] = []

    def run(handler: Callable[[Event], None], **options: Any) -> Informer:
        options.setdefault("backoff", Backoff(initial=0.1, maximum=0.5))
        informer = Informer(GADGETS, handler, api_client=api, **options).start()
        started.append(informer)
        assert informer.wait_for_sync(15)
        return informer

    yield run
    for informer in started:
        informer.stop()


def gadget(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def test_changes_to_custom_resources_reach_the_handler_and_the_cache(objects, namespace, cache,
                                                                   run_informer):
    writer, reader = cache
    kind = GADGETS.name
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget("before", size=1))
    events: list[Event] = []

    def handle(event: Event) -> None:
        events.append(event)
        writer.apply(kind, event)

    run_informer(handle, namespaces=namespace, on_list=writer.list_hook_for(kind))
    assert [(e.type.value, e.key) for e in events] == [("ADDED", f"{namespace}/before")]
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget("g", size=1))
    objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "g", {"spec": {"size": 2}})
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "g",
                                                  {"status": {"phase": "Ready"}})
    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "before")
    eventually(lambda: len(events) == 5)
    assert [(e.type.value, e.key) for e in events[1:]] == [
        ("ADDED", f"{namespace}/g"), ("MODIFIED", f"{namespace}/g"), ("MODIFIED", f"{namespace}/g"),
        ("DELETED", f"{namespace}/before")]
    assert events[2].new["spec"] == {"size": 2} and "spec" not in events[2].old  # old: the fingerprint
    assert (events[2].old["metadata"]["generation"], events[2].new["metadata"]["generation"]) == (1, 2)
    assert events[4].old["metadata"]["name"] == "before" and events[4].new is None
    cached = reader.get(kind, f"{namespace}/g")
    assert cached["spec"] == {"size": 2} and cached["status"] == {"phase": "Ready"}
    assert "managedFields" not in cached["metadata"]
    assert reader.resource_version(kind, f"{namespace}/g") == events[3].new["metadata"]["resourceVersion"]
    assert reader.keys(kind, namespace) == [f"{namespace}/g"]


def test_label_and_field_selectors_filter_on_the_server(objects, namespace, run_informer):
    for name, tier in (("red", "front"), ("green", "back"), ("blue", "front")):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                gadget(name, labels={"tier": tier}))
    seen: list[str] = []
    # Across all namespaces: the field selector keeps this test's namespace only.
    informer = run_informer(lambda event: seen.append(event.key), label_selector="tier=front",
                            field_selector=f"metadata.namespace={namespace},metadata.name!=blue")
    assert seen == [f"{namespace}/red"]
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                            gadget("yellow", labels={"tier": "front"}))
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                            gadget("black", labels={"tier": "back"}))
    eventually(lambda: f"{namespace}/yellow" in seen)
    time.sleep(0.3)
    assert seen == [f"{namespace}/red", f"{namespace}/yellow"]
    assert sorted(o["metadata"]["name"] for o in informer.list()) == ["red", "yellow"]


def test_an_informer_over_several_namespaces_sees_those_only(api, objects, namespace, run_informer):
    core = client.CoreV1Api(api)
    other, outside = f"{namespace}-b", f"{namespace}-c"
    for name in (other, outside):
        core.create_namespace({"metadata": {"name": name}})
    try:
        for ns in (namespace, other, outside):
            objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, gadget("x"))
        seen: list[str] = []
        run_informer(lambda event: seen.append(event.key), namespaces=[namespace, other])
        assert sorted(seen) == sorted([f"{namespace}/x", f"{other}/x"])
    finally:
        for name in (other, outside):
            core.delete_namespace(name)


def test_built_in_resources_are_watched_through_the_core_group(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    seen: list[Event] = []
    informer = Informer(Resource("", "v1", "configmaps"), seen.append, api_client=api, namespaces=namespace)
    with informer:
        assert informer.wait_for_sync(15)
    settings = [e.new for e in seen if e.key == f"{namespace}/settings"]
    assert settings and settings[0]["kind"] == "ConfigMap" and settings[0]["data"] == {"a": "1"}


def test_stop_interrupts_an_open_watch_at_once(namespace, run_informer):
    informer = run_informer(lambda event: None, namespaces=namespace, watch_timeout=60)
    time.sleep(0.3)  # the watch is open and idle
    began = time.monotonic()
    informer.stop()
    assert time.monotonic() - began < 2.0


def test_the_cache_converges_after_the_api_server_restarts(control_plane, objects, namespace, cache,
                                                        run_informer):
    writer, reader = cache
    kind = GADGETS.name
    for name in ("a", "b"):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget(name, size=1))
    run_informer(writer.handler_for(kind), namespaces=namespace, on_list=writer.list_hook_for(kind))
    assert reader.keys(kind, namespace) == [f"{namespace}/a", f"{namespace}/b"]
    control_plane.stop_apiserver()
    time.sleep(0.5)  # the watch breaks and the informer backs off
    control_plane.start_apiserver()
    objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a", {"spec": {"size": 5}})
    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "b")
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget("c", size=1))
    final = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in
             objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]}
    eventually(lambda: reader.keys(kind, namespace) == [f"{namespace}/a", f"{namespace}/c"], timeout=30)
    eventually(lambda: {name: reader.resource_version(kind, f"{namespace}/{name}") for name in final} == final)
    assert reader.get(kind, f"{namespace}/a")["spec"] == {"size": 5}


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> None:
    """The control plane is slower than the fakes: a longer default wait."""
    _eventually(check, timeout)
