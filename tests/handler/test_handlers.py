"""For, Owns and Watches: which queue keys an informer event wakes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shard_operator.handler import Custom, For, LabelsChanged, Owns, Watches, controller_owner_key
from shard_operator.source import Event, EventType, Resource

WIDGETS = Resource("example.com", "v1", "widgets")
CLUSTERS = Resource("example.com", "v1", "clusters", namespaced=False)
CONFIGMAPS = Resource("", "v1", "configmaps")


def obj(name: str = "w", namespace: str | None = "ns", rv: str = "1", generation: int = 1,
        owners: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None,
        **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv, "generation": generation}
    if labels is not None:
        meta["labels"] = labels
    if namespace:
        meta["namespace"] = namespace
    if owners is not None:
        meta["ownerReferences"] = owners
    return {"metadata": meta, **fields}


def ref(name: str, kind: str = "Widget", api_version: str = "example.com/v1", controller: bool | None = True
        ) -> dict[str, Any]:
    reference: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": f"uid-{name}"}
    if controller is not None:
        reference["controller"] = controller
    return reference


def modified(old: dict[str, Any], **changes: Any) -> Event:
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = str(int(old["metadata"]["resourceVersion"]) + 1)
    for name, value in changes.items():
        if name in ("spec", "status", "data"):
            new[name] = value
        else:
            new["metadata"][name] = value
    return Event(EventType.MODIFIED, "k", old, new)


def test_for_maps_an_event_to_the_key_of_the_object_itself() -> None:
    handler = For(WIDGETS)
    assert handler.keys_for(Event(EventType.ADDED, "ns/w", None, obj())) == ["ns/w"]
    assert handler.keys_for(Event(EventType.DELETED, "ns/w", obj(), None)) == ["ns/w"]
    cluster = For(CLUSTERS)
    assert cluster.keys_for(Event(EventType.ADDED, "c", None, obj("c", namespace=None))) == ["c"]


def test_for_filters_a_status_only_update_by_default_and_passes_a_spec_change() -> None:
    handler = For(WIDGETS)
    assert handler.keys_for(modified(obj(), status={"phase": "Ready"})) == []
    assert handler.keys_for(modified(obj(), generation=2, spec={"size": 3})) == ["ns/w"]


def test_for_with_explicit_predicates_replaces_the_default_and_empty_passes_everything() -> None:
    status_write = modified(obj(), status={"phase": "Ready"})
    assert For(WIDGETS, predicates=()).keys_for(status_write) == ["ns/w"]
    assert For(WIDGETS, predicates=[LabelsChanged()]).keys_for(status_write) == []
    assert For(WIDGETS, predicates=LabelsChanged()).keys_for(modified(obj(), labels={"a": "b"})) == ["ns/w"]
    several = For(WIDGETS, predicates=[LabelsChanged(), Custom(lambda e: False)])
    assert several.keys_for(modified(obj(), labels={"a": "b"})) == []


def test_owns_maps_an_owned_object_to_its_controller_owner() -> None:
    handler = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    event = Event(EventType.ADDED, "ns/cm", None, obj("cm", owners=[ref("parent")]))
    assert handler.keys_for(event) == ["ns/parent"]


def test_owns_ignores_owners_that_are_not_the_controller() -> None:
    handler = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    not_controller = obj("cm", owners=[ref("a", controller=False), ref("b", controller=None)])
    assert handler.keys_for(Event(EventType.ADDED, "ns/cm", None, not_controller)) == []
    mixed = obj("cm", owners=[ref("a", controller=False), ref("b")])
    assert handler.keys_for(Event(EventType.ADDED, "ns/cm", None, mixed)) == ["ns/b"]


def test_owns_ignores_a_controller_of_another_kind_or_group_but_not_another_version() -> None:
    handler = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    for other in (ref("x", kind="Gadget"), ref("x", api_version="other.com/v1"), ref("x", api_version="v1")):
        assert handler.keys_for(Event(EventType.ADDED, "ns/cm", None, obj("cm", owners=[other]))) == []
    v2 = obj("cm", owners=[ref("x", api_version="example.com/v2")])
    assert handler.keys_for(Event(EventType.ADDED, "ns/cm", None, v2)) == ["ns/x"]


def test_owns_maps_objects_without_owners_to_nothing() -> None:
    handler = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    assert handler.keys_for(Event(EventType.ADDED, "ns/cm", None, obj("cm"))) == []


def test_owns_wakes_both_the_old_and_the_new_owner_when_the_controller_changes() -> None:
    handler = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    event = modified(obj("cm", owners=[ref("a")]), ownerReferences=[ref("b")])
    assert handler.keys_for(event) == ["ns/a", "ns/b"]
    same = modified(obj("cm", owners=[ref("a")]), data={"k": "v"})
    assert handler.keys_for(same) == ["ns/a"]


def test_owns_passes_status_changes_of_owned_objects_by_default() -> None:
    handler = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    assert handler.keys_for(modified(obj("cm", owners=[ref("a")]), status={"ready": True})) == ["ns/a"]


def test_owns_keys_a_cluster_scoped_owner_by_name() -> None:
    handler = Owns(CONFIGMAPS, owner=CLUSTERS, owner_kind="Cluster")
    event = Event(EventType.DELETED, "ns/cm", obj("cm", owners=[ref("c1", kind="Cluster")]), None)
    assert handler.keys_for(event) == ["c1"]
    assert controller_owner_key(obj("cm", namespace=None, owners=[ref("w")]), WIDGETS, "Widget") is None


def test_for_builds_an_owns_handler_for_its_own_kind() -> None:
    handler = For(WIDGETS, kind="Widget").owns(CONFIGMAPS)
    assert (handler.owner, handler.owner_kind, handler.resource) == (WIDGETS, "Widget", CONFIGMAPS)
    with pytest.raises(ValueError, match="kind="):
        For(WIDGETS).owns(CONFIGMAPS)


def test_watches_maps_through_the_user_function_without_duplicates() -> None:
    def by_label(o: dict[str, Any]) -> list[str]:
        target = (o["metadata"].get("labels") or {}).get("widget")
        return [f"{o['metadata']['namespace']}/{target}", "ns/always"] if target else ["ns/always"]

    handler = Watches(CONFIGMAPS, by_label)
    event = modified(obj("cm", labels={"widget": "a"}), labels={"widget": "b"})
    assert handler.keys_for(event) == ["ns/a", "ns/always", "ns/b"]
    assert handler.keys_for(Event(EventType.DELETED, "ns/cm", obj("cm"), None)) == ["ns/always"]


def test_watches_calls_the_function_once_on_a_resync() -> None:
    calls: list[dict[str, Any]] = []

    def record(o: dict[str, Any]) -> list[str]:
        calls.append(o)
        return ["ns/x"]

    same = obj("cm")
    assert Watches(CONFIGMAPS, record).keys_for(Event(EventType.MODIFIED, "ns/cm", same, same)) == ["ns/x"]
    assert calls == [same]


def test_watches_applies_its_predicates_before_mapping() -> None:
    called: list[dict[str, Any]] = []

    def record(o: dict[str, Any]) -> list[str]:
        called.append(o)
        return ["ns/x"]

    handler = Watches(CONFIGMAPS, record, predicates=[LabelsChanged()])
    assert handler.keys_for(modified(obj("cm"), data={"k": "v"})) == []
    assert called == []
