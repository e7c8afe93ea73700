"""Predicates on informer events: which changes reach the work queue."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shard_operator.handler import (
    And,
    AnnotationsChanged,
    Custom,
    DeletionTimestampChanged,
    FinalizersChanged,
    GenerationChanged,
    LabelsChanged,
    Not,
    Or,
    Predicate,
    ResourceVersionChanged,
    default_for_predicate,
    is_resync,
)
from shard_operator.source import Event, EventType


def widget(rv: str = "1", generation: int | None = 1, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "w", "namespace": "ns", "resourceVersion": rv, **meta}
    if generation is not None:
        metadata["generation"] = generation
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": metadata,
            "spec": {"size": 1}, "status": {}}


def update(old: dict[str, Any], **changes: Any) -> Event:
    """A MODIFIED event from ``old`` to a copy with a new resourceVersion and ``changes`` to metadata."""
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = str(int(old["metadata"]["resourceVersion"]) + 1)
    for name, value in changes.items():
        if name in ("spec", "status"):
            new[name] = value
        elif value is None:
            new["metadata"].pop(name, None)
        else:
            new["metadata"][name] = value
    return Event(EventType.MODIFIED, "ns/w", old, new)


def added() -> Event:
    return Event(EventType.ADDED, "ns/w", None, widget())


def deleted() -> Event:
    return Event(EventType.DELETED, "ns/w", widget(), None)


def resync() -> Event:
    obj = widget()
    return Event(EventType.MODIFIED, "ns/w", obj, obj)


CHANGE_PREDICATES = [GenerationChanged(), LabelsChanged(), AnnotationsChanged(), FinalizersChanged(),
                     DeletionTimestampChanged(), ResourceVersionChanged(), default_for_predicate()]


@pytest.mark.parametrize("predicate", CHANGE_PREDICATES, ids=repr)
def test_every_change_predicate_passes_creation_and_deletion(predicate: Predicate) -> None:
    assert predicate(added())
    assert predicate(deleted())


@pytest.mark.parametrize("predicate", [p for p in CHANGE_PREDICATES if not isinstance(p, ResourceVersionChanged)],
                         ids=repr)
def test_a_resync_passes_every_change_predicate_but_resource_version_changed(predicate: Predicate) -> None:
    assert is_resync(resync())
    assert predicate(resync())
    assert not ResourceVersionChanged()(resync())


def test_an_update_at_the_same_resource_version_counts_as_a_resync() -> None:
    event = Event(EventType.MODIFIED, "ns/w", widget(rv="7"), widget(rv="7"))
    assert is_resync(event)
    assert not ResourceVersionChanged()(event)
    assert not is_resync(update(widget()))


def test_resource_version_changed_passes_any_real_update() -> None:
    assert ResourceVersionChanged()(update(widget(), status={"phase": "Ready"}))


def test_generation_changed_passes_a_spec_change_and_filters_a_status_only_write() -> None:
    old = widget(generation=3)
    assert GenerationChanged()(update(old, generation=4, spec={"size": 2}))
    assert not GenerationChanged()(update(old, status={"phase": "Ready"}))


def test_generation_changed_passes_updates_of_resources_without_generation() -> None:
    assert GenerationChanged()(update(widget(generation=None), labels={"a": "b"}))


def test_labels_changed_compares_labels_only() -> None:
    old = widget(labels={"app": "a"})
    assert LabelsChanged()(update(old, labels={"app": "b"}))
    assert LabelsChanged()(update(old, labels=None))
    assert not LabelsChanged()(update(old, annotations={"x": "y"}))
    assert not LabelsChanged()(update(widget(), labels={}))  # absent and empty are the same


def test_annotations_changed_compares_annotations_only() -> None:
    old = widget(annotations={"note": "1"})
    assert AnnotationsChanged()(update(old, annotations={"note": "2"}))
    assert not AnnotationsChanged()(update(old, labels={"x": "y"}))


def test_finalizers_changed_sees_additions_and_removals() -> None:
    assert FinalizersChanged()(update(widget(), finalizers=["example.com/cleanup"]))
    assert FinalizersChanged()(update(widget(finalizers=["example.com/cleanup"]), finalizers=None))
    assert not FinalizersChanged()(update(widget(finalizers=["f"]), status={"x": 1}))


def test_deletion_timestamp_changed_sees_deletion_begin() -> None:
    assert DeletionTimestampChanged()(update(widget(), deletionTimestamp="2024-01-01T00:00:00Z"))
    assert not DeletionTimestampChanged()(update(widget(), labels={"a": "b"}))


def test_default_predicate_filters_a_status_only_write() -> None:
    assert not default_for_predicate()(update(widget(), status={"phase": "Ready"}))


def test_default_predicate_filters_metadata_changes_that_do_not_bump_generation() -> None:
    assert not default_for_predicate()(update(widget(), labels={"a": "b"}, annotations={"c": "d"}))


def test_default_predicate_passes_a_spec_change() -> None:
    assert default_for_predicate()(update(widget(generation=1), generation=2, spec={"size": 5}))


def test_default_predicate_passes_creation_deletion_and_resync() -> None:
    predicate = default_for_predicate()
    assert predicate(added()) and predicate(deleted()) and predicate(resync())


def test_default_predicate_passes_a_finalizer_change() -> None:
    assert default_for_predicate()(update(widget(), finalizers=["example.com/cleanup"]))


def test_default_predicate_passes_the_update_that_starts_deletion() -> None:
    old = widget(finalizers=["example.com/cleanup"])
    assert default_for_predicate()(update(old, deletionTimestamp="2024-01-01T00:00:00Z",
                                          deletionGracePeriodSeconds=0))


def test_and_or_not_combine_predicates_and_their_operators_match() -> None:
    labels = update(widget(), labels={"a": "b"})
    yes, no = Custom(lambda e: True), Custom(lambda e: False)
    assert And(yes, yes)(labels) and not And(yes, no)(labels) and And()(labels)
    assert Or(no, yes)(labels) and not Or(no, no)(labels) and not Or()(labels)
    assert Not(no)(labels) and not Not(yes)(labels)
    assert (LabelsChanged() & ~GenerationChanged())(labels)
    assert not (LabelsChanged() & GenerationChanged())(labels)
    assert (GenerationChanged() | LabelsChanged())(labels)


def test_custom_predicate_sees_the_event_and_its_result_is_a_bool() -> None:
    seen: list[Event] = []

    def only_ready(event: Event) -> Any:
        seen.append(event)
        return event.object.get("status", {}).get("phase") == "Ready" or None

    event = update(widget(), status={"phase": "Ready"})
    assert Custom(only_ready)(event) is True
    assert Custom(only_ready)(added()) is False
    assert seen[0] is event
