"""Conditions, observed generation, owner references and the request counter, on plain dicts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shard_operator.client import (
    AlreadyOwnedError,
    RequestCounter,
    controller_reference,
    find_condition,
    generation,
    is_condition_true,
    is_observed,
    observed_generation,
    owner_reference,
    remove_condition,
    set_condition,
    set_controller_reference,
)

T0, T1 = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"


def test_a_new_condition_is_added_with_its_transition_time() -> None:
    status: dict[str, Any] = {}
    assert set_condition(status, "Ready", "False", "Creating", "waiting", 3, now=T0)
    assert status["conditions"] == [{"type": "Ready", "status": "False", "reason": "Creating",
                                     "message": "waiting", "observedGeneration": 3, "lastTransitionTime": T0}]


def test_transition_time_changes_only_when_the_status_changes() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "False", "Creating", "waiting", 1, now=T0)
    assert set_condition(status, "Ready", "False", "StillCreating", "almost", 2, now=T1)
    assert find_condition(status, "Ready") == {"type": "Ready", "status": "False", "reason": "StillCreating",
                                               "message": "almost", "observedGeneration": 2,
                                               "lastTransitionTime": T0}
    assert set_condition(status, "Ready", True, "Available", "", 2, now=T1)
    assert find_condition(status, "Ready")["lastTransitionTime"] == T1  # type: ignore[index]


def test_setting_an_identical_condition_reports_no_change() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "True", "Available", "ok", 1, now=T0)
    before = [dict(c) for c in status["conditions"]]
    assert not set_condition(status, "Ready", "True", "Available", "ok", 1, now=T1)
    assert status["conditions"] == before


def test_conditions_of_other_types_are_left_alone_and_can_be_removed() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "True", "Available", now=T0)
    set_condition(status, "Degraded", "False", "Healthy", now=T0)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Degraded"]
    assert "observedGeneration" not in status["conditions"][0]
    assert remove_condition(status, "Ready") and not remove_condition(status, "Ready")
    assert [c["type"] for c in status["conditions"]] == ["Degraded"]


def test_conditions_are_read_from_an_object_or_its_status() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "True", "Available", now=T0)
    obj = {"metadata": {"name": "w"}, "status": status}
    assert is_condition_true(obj, "Ready") and is_condition_true(status, "Ready")
    assert not is_condition_true(obj, "Degraded") and find_condition({"metadata": {}}, "Ready") is None


def test_set_condition_refuses_bad_statuses_and_missing_reasons() -> None:
    with pytest.raises(ValueError, match="status must be"):
        set_condition({}, "Ready", "yes", "Because")
    with pytest.raises(ValueError, match="reason"):
        set_condition({}, "Ready", "True", "")


def test_set_condition_without_now_stamps_the_current_time_in_rfc3339() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "Unknown", "Starting")
    stamp = status["conditions"][0]["lastTransitionTime"]
    assert len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T"


def test_observed_generation_tells_whether_the_status_describes_the_current_spec() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "w", "generation": 4}, "status": {"observedGeneration": 3}}
    assert (generation(obj), observed_generation(obj), is_observed(obj)) == (4, 3, False)
    obj["status"]["observedGeneration"] = 4
    assert is_observed(obj)
    assert not is_observed({"metadata": {"generation": 1}})
    assert is_observed({"metadata": {}}) and observed_generation({"metadata": {}}) is None


def owner(name: str = "parent", kind: str = "Widget", namespace: str | None = "ns",
          api_version: str = "example.com/v1") -> dict[str, Any]:
    meta = {"name": name, "uid": f"uid-{name}"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def test_owner_reference_names_the_owner_by_uid() -> None:
    assert owner_reference(owner()) == {"apiVersion": "example.com/v1", "kind": "Widget", "name": "parent",
                                        "uid": "uid-parent", "controller": True, "blockOwnerDeletion": True}
    plain = owner_reference(owner(), controller=False, block_owner_deletion=False)
    assert (plain["controller"], plain["blockOwnerDeletion"]) == (False, False)
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        owner_reference({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}})


def test_set_controller_reference_adds_the_controller_and_keeps_other_owners() -> None:
    child: dict[str, Any] = {"metadata": {"name": "c", "namespace": "ns", "ownerReferences": [
        owner_reference(owner("other", kind="Gadget"), controller=False)]}}
    assert set_controller_reference(child, owner()) is child
    assert [r["name"] for r in child["metadata"]["ownerReferences"]] == ["other", "parent"]
    assert controller_reference(child)["uid"] == "uid-parent"  # type: ignore[index]


def test_setting_the_same_controller_again_replaces_its_reference_in_place() -> None:
    child: dict[str, Any] = {"metadata": {"name": "c", "namespace": "ns"}}
    set_controller_reference(child, owner())
    set_controller_reference(child, owner(api_version="example.com/v2"), block_owner_deletion=False)
    assert child["metadata"]["ownerReferences"] == [{
        "apiVersion": "example.com/v2", "kind": "Widget", "name": "parent", "uid": "uid-parent",
        "controller": True, "blockOwnerDeletion": False}]


def test_set_controller_reference_refuses_an_object_another_controller_owns() -> None:
    child: dict[str, Any] = {"metadata": {"name": "c", "namespace": "ns"}}
    set_controller_reference(child, owner("first"))
    with pytest.raises(AlreadyOwnedError, match="first") as raised:
        set_controller_reference(child, owner("second"))
    assert raised.value.owner["name"] == "first"
    assert [r["name"] for r in child["metadata"]["ownerReferences"]] == ["first"]


def test_a_namespaced_owner_cannot_own_objects_elsewhere() -> None:
    with pytest.raises(ValueError, match="namespace 'other'"):
        set_controller_reference({"metadata": {"name": "c", "namespace": "other"}}, owner())
    with pytest.raises(ValueError, match="cluster scope"):
        set_controller_reference({"metadata": {"name": "c"}}, owner())
    cluster_owned: dict[str, Any] = {"metadata": {"name": "c", "namespace": "any"}}
    set_controller_reference(cluster_owned, owner("cl", kind="Cluster", namespace=None))
    assert controller_reference(cluster_owned)["name"] == "cl"  # type: ignore[index]


def test_request_counter_counts_by_verb_and_resource_across_threads() -> None:
    counter = RequestCounter()

    def hammer() -> None:
        for _ in range(500):
            counter.record("patch", "w/status")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counter.record("get", "w")
    assert counter.counts[("patch", "w/status")] == 2000 and counter.counts[("list", "w")] == 0
    assert (counter.total(), counter.total("get"), counter.total(resource="w")) == (2001, 1, 1)
    snapshot = counter.counts
    counter.reset()
    assert counter.total() == 0 and snapshot[("get", "w")] == 1
