"""The reconcilers' client against a real kube-apiserver: concurrency, status, finalizers, owners, events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from shard_operator.client import (
    Client,
    EventRecorder,
    RequestCounter,
    find_condition,
    install_crd,
    is_observed,
    open_crd,
    set_condition,
    set_controller_reference,
)
from shard_operator.errors import ConflictError, NotFoundError
from shard_operator.handler import Owns
from shard_operator.source import Event, EventType, Resource
from shard_operator.testing import ControlPlane

pytestmark = pytest.mark.controlplane

GROUP, VERSION, PLURAL, KIND = "client.shard-operator.dev", "v1", "things", "Thing"
THINGS = Resource(GROUP, VERSION, PLURAL)
CONFIGMAPS = Resource("", "v1", "configmaps")
STATUS = f"{THINGS.name}/status"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as api_client:
        install_crd(api_client, open_crd(THINGS, KIND))
        yield api_client


@pytest.fixture
def kube(api: k8s.ApiClient) -> Client:
    return Client(api, counter=RequestCounter(), field_manager="client-tests")


def thing(kube: Client, namespace: str, name: str = "t", **spec: Any) -> dict[str, Any]:
    created = kube.create(THINGS, {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                                   "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    kube.counter.reset()
    return created


def test_patch_status_writes_the_status_subresource_and_counts_one_patch(kube: Client, namespace: str) -> None:
    obj = thing(kube, namespace, size=1)
    updated = kube.patch_status(THINGS, obj, {"phase": "Ready", "observedGeneration": 1})
    assert updated["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert updated["spec"] == {"size": 1} and is_observed(updated)
    assert updated["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]
    assert kube.counter.counts == {("patch", STATUS): 1}
    assert "status" not in obj  # the object passed in is not modified


def test_patch_status_from_a_stale_object_raises_conflict_error(kube: Client, namespace: str) -> None:
    stale = thing(kube, namespace, size=1)
    kube.patch(THINGS, stale, {"spec": {"size": 2}})  # someone else changed it since it was read
    with pytest.raises(ConflictError) as raised:
        kube.patch_status(THINGS, stale, {"phase": "Ready"})
    assert raised.value.status == 409
    assert "status" not in kube.get(THINGS, "t", namespace)


def test_patch_status_refuses_an_object_without_resource_version(kube: Client, namespace: str) -> None:
    with pytest.raises(ValueError, match="resourceVersion"):
        kube.patch_status(THINGS, {"metadata": {"name": "t", "namespace": namespace}}, {})
    assert kube.counter.total() == 0


def test_conditions_round_trip_and_keep_their_transition_time(kube: Client, namespace: str) -> None:
    obj = thing(kube, namespace)
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "False", "Creating", "waiting", 1, now="2024-01-01T00:00:00Z")
    obj = kube.patch_status(THINGS, obj, status)
    status = dict(obj["status"])
    assert not set_condition(status, "Ready", "False", "Creating", "waiting", 1)
    set_condition(status, "Ready", "True", "Available", "done", 1, now="2024-01-01T00:01:00Z")
    obj = kube.patch_status(THINGS, obj, status)
    ready = find_condition(kube.get(THINGS, "t", namespace), "Ready")
    assert ready == {"type": "Ready", "status": "True", "reason": "Available", "message": "done",
                     "observedGeneration": 1, "lastTransitionTime": "2024-01-01T00:01:00Z"}


def test_finalizers_are_added_and_removed_once_and_guard_deletion(kube: Client, namespace: str) -> None:
    obj = thing(kube, namespace)
    obj = kube.add_finalizer(THINGS, obj, "client.shard-operator.dev/cleanup")
    assert kube.add_finalizer(THINGS, obj, "client.shard-operator.dev/cleanup") is obj  # no request
    assert obj["metadata"]["finalizers"] == ["client.shard-operator.dev/cleanup"]
    assert kube.counter.counts == {("patch", THINGS.name): 1}
    kube.delete(THINGS, obj)
    deleting = kube.get(THINGS, "t", namespace)
    assert deleting["metadata"].get("deletionTimestamp")
    kube.remove_finalizer(THINGS, deleting, "client.shard-operator.dev/cleanup")
    with pytest.raises(NotFoundError):
        kube.get(THINGS, "t", namespace)


def test_finalizer_changes_from_a_stale_object_raise_conflict_error(kube: Client, namespace: str) -> None:
    stale = thing(kube, namespace)
    kube.add_finalizer(THINGS, stale, "a.example.com/one")
    with pytest.raises(ConflictError):
        kube.add_finalizer(THINGS, stale, "a.example.com/two")
    current = kube.get(THINGS, "t", namespace)
    assert current["metadata"]["finalizers"] == ["a.example.com/one"]
    with pytest.raises(ConflictError):
        kube.remove_finalizer(THINGS, {**stale, "metadata": {**stale["metadata"], "finalizers": ["a.example.com/one"]}},
                              "a.example.com/one")
    kube.remove_finalizer(THINGS, current, "a.example.com/one")
    assert not kube.get(THINGS, "t", namespace)["metadata"].get("finalizers")


def test_delete_of_a_changed_object_raises_conflict_error(kube: Client, namespace: str) -> None:
    stale = thing(kube, namespace)
    kube.patch(THINGS, stale, {"spec": {"size": 9}})
    with pytest.raises(ConflictError):
        kube.delete(THINGS, stale)
    kube.delete(THINGS, stale, precondition=False)
    with pytest.raises(NotFoundError):
        kube.delete(THINGS, stale, precondition=False)


def test_an_owned_object_stores_its_controller_reference_and_maps_back_to_its_owner(kube: Client,
                                                                                  namespace: str) -> None:
    parent = thing(kube, namespace, "parent")
    child = set_controller_reference({"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "child", "namespace": namespace}, "data": {}}, parent)
    stored = kube.create(CONFIGMAPS, child)
    assert stored["metadata"]["ownerReferences"] == [{
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": "parent", "uid": parent["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    handler = Owns(CONFIGMAPS, owner=THINGS, owner_kind=KIND)
    assert handler.keys_for(Event(EventType.ADDED, f"{namespace}/child", None, stored)) == [f"{namespace}/parent"]
    # The test control plane runs no garbage collector: the child outlives its owner, references intact.
    kube.delete(THINGS, parent, precondition=False)
    assert kube.get(CONFIGMAPS, "child", namespace)["metadata"]["ownerReferences"][0]["name"] == "parent"


def test_events_are_recorded_on_the_involved_object(kube: Client, namespace: str, api: k8s.ApiClient) -> None:
    obj = thing(kube, namespace)
    recorder = EventRecorder(kube, "client-tests", instance="pod-0")
    assert recorder.normal(obj, "Created", "made it") is not None
    assert recorder.warning(obj, "Invalid", "x" * 5000) is not None
    assert kube.counter.counts == {("create", "events.v1"): 2}
    events = k8s.CoreV1Api(api).list_namespaced_event(namespace, field_selector="involvedObject.name=t").items
    assert sorted((e.type, e.reason, len(e.message or "")) for e in events) == [("Normal", "Created", 7),
                                                                        ("Warning", "Invalid", 1024)]
    involved = events[0].involved_object
    assert (involved.kind, involved.uid, involved.api_version) == (KIND, obj["metadata"]["uid"], f"{GROUP}/{VERSION}")
    assert events[0].source is not None and events[0].source.component == "client-tests"
    assert events[0].reporting_instance == "pod-0"


def test_event_recording_failures_are_logged_and_never_raised(kube: Client, caplog: pytest.LogCaptureFixture) -> None:
    recorder = EventRecorder(kube, "client-tests")
    missing = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "no-such-ns"}}
    assert recorder.normal(missing, "Created", "nowhere to go") is None
    assert recorder.record(missing, "Bogus", "Reason", "bad type") is None
    assert recorder.record({"kind": "NoMetadata"}, "Normal", "Reason", "no name") is None
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR", "ERROR"]
    assert kube.counter.total() == 1
