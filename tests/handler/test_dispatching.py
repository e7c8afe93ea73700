"""The leader's event path: cache write, then handler mapping, then one queue add (fakeredis)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
from prometheus_client import REGISTRY

from shard_operator.cache import CacheReader, CacheWriter
from shard_operator.dispatching import EventDispatcher
from shard_operator.errors import StorageError
from shard_operator.handler import For, Owns, Watches
from shard_operator.keys import Keys
from shard_operator.queue import WorkQueue
from shard_operator.sharding import Assigner, Membership
from shard_operator.source import Event, EventType, Resource

WIDGETS = Resource("example.com", "v1", "widgets")
CONFIGMAPS = Resource("", "v1", "configmaps")
CONTROLLER = "dispatch"
KEYS = Keys.for_controller(CONTROLLER)


def obj(name: str, rv: str = "1", owner: str | None = None, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": rv, "generation": 1, "uid": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "example.com/v1", "kind": "Widget", "name": owner,
                                    "uid": f"uid-{owner}", "controller": True}]
    return {"metadata": meta, **fields}


@pytest.fixture
def client() -> redis.Redis:
    c = fakeredis.FakeRedis()
    Membership(c, KEYS, "s0").heartbeat()
    Assigner(c, KEYS, member_ttl=60).rebalance()
    return c


def dispatcher(client: redis.Redis, kind: str, *handlers: Any) -> EventDispatcher:
    return EventDispatcher(kind, handlers, cache=CacheWriter(client), queue=WorkQueue(client, KEYS),
                           controller=CONTROLLER)


def queued(client: redis.Redis) -> list[str]:
    return [raw.decode() for raw in client.lrange(KEYS.ready("s0"), 0, -1)]


def adds() -> float:
    return REGISTRY.get_sample_value("workqueue_adds_total", {"name": CONTROLLER}) or 0.0


def test_an_event_is_cached_before_its_key_is_queued_so_the_worker_reads_at_least_that_version(client):
    seen: list[str | None] = []

    class Probe(For):
        def map(self, event: Event):  # runs between the cache write and the add
            seen.append(CacheReader(client).resource_version(WIDGETS.name, "ns/a"))
            return super().map(event)

    dispatch = dispatcher(client, WIDGETS.name, Probe(WIDGETS))
    before = adds()
    assert dispatch.dispatch(Event(EventType.ADDED, "ns/a", None, obj("a", rv="7"))) == 1
    assert seen == ["7"] and queued(client) == ["ns/a"] and adds() == before + 1


def test_keys_of_every_handler_are_added_once_in_one_round_trip(client):
    by_label = Watches(CONFIGMAPS, lambda o: ["ns/a", "ns/b"])
    owns = Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget")
    dispatch = dispatcher(client, CONFIGMAPS.name, owns, by_label)
    calls: list[list[str]] = []
    add_many = dispatch.queue.add_many
    dispatch.queue.add_many = lambda keys: calls.append(list(keys)) or add_many(keys)  # type: ignore[method-assign]
    assert dispatch.dispatch(Event(EventType.ADDED, "ns/cm", None, obj("cm", owner="a"))) == 2
    assert calls == [["ns/a", "ns/b"]] and queued(client) == ["ns/a", "ns/b"]


def test_a_key_already_waiting_is_not_added_again_and_not_counted(client):
    dispatch = dispatcher(client, WIDGETS.name, For(WIDGETS))
    dispatch(Event(EventType.ADDED, "ns/a", None, obj("a", rv="1")))
    before = adds()
    old, new = obj("a", rv="1"), obj("a", rv="2", spec={"size": 2})
    new["metadata"]["generation"] = 2
    assert dispatch.dispatch(Event(EventType.MODIFIED, "ns/a", old, new)) == 0
    assert queued(client) == ["ns/a"] and adds() == before
    assert CacheReader(client).resource_version(WIDGETS.name, "ns/a") == "2"


def test_an_event_the_predicates_drop_is_still_cached_but_queues_nothing(client):
    dispatch = dispatcher(client, WIDGETS.name, For(WIDGETS))
    old = obj("a", rv="1")
    assert dispatch.dispatch(Event(EventType.MODIFIED, "ns/a", old, obj("a", rv="2", status={"ok": True}))) == 0
    assert queued(client) == [] and CacheReader(client).get(WIDGETS.name, "ns/a")["status"] == {"ok": True}


def test_a_deletion_removes_the_cached_object_and_wakes_its_key(client):
    dispatch = dispatcher(client, WIDGETS.name, For(WIDGETS))
    dispatch(Event(EventType.ADDED, "ns/a", None, obj("a", rv="1")))
    client.delete(KEYS.dirty, KEYS.ready("s0"))
    assert dispatch.dispatch(Event(EventType.DELETED, "ns/a", obj("a", rv="2"), None)) == 1
    assert CacheReader(client).get(WIDGETS.name, "ns/a") is None and queued(client) == ["ns/a"]


def test_a_failed_cache_write_raises_storage_error_and_queues_nothing(client):
    dispatch = dispatcher(client, WIDGETS.name, For(WIDGETS))

    def broken(kind: str, event: Event) -> bool:
        raise StorageError("redis: Connection reset by peer")

    dispatch.cache.apply = broken  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        dispatch(Event(EventType.ADDED, "ns/a", None, obj("a")))
    assert queued(client) == [] and not client.hexists(KEYS.dirty, "ns/a")


def full(name: str, rv: str, owner: str, **meta: Any) -> dict[str, Any]:
    """A whole object as the API sends it, with metadata every predicate reads."""
    widget = obj(name, rv, owner=owner, spec={"size": int(rv)}, status={"phase": "Ready"})
    widget["metadata"].update(meta)
    return widget


UPDATES = [  # (old metadata, new metadata): one change each predicate or mapping looks at
    ({}, {}),
    ({"generation": 1}, {"generation": 2}),
    ({"labels": {"a": "1"}}, {"labels": {"a": "2"}}),
    ({"annotations": {"big": "x" * 400}}, {"annotations": {"big": "y" * 400}}),
    ({"annotations": {"big": "x" * 400}}, {"annotations": {"big": "x" * 400}}),
    ({"finalizers": ["f"]}, {"finalizers": []}),
    ({}, {"deletionTimestamp": "2026-11-28T05:00:00Z"}),
]


@pytest.mark.parametrize(("old_meta", "new_meta"), UPDATES)
def test_handlers_map_an_update_from_the_old_fingerprint_as_they_do_from_the_whole_old_object(old_meta, new_meta):
    from shard_operator.handler.predicate import (
        AnnotationsChanged,
        DeletionTimestampChanged,
        FinalizersChanged,
        GenerationChanged,
        LabelsChanged,
        default_for_predicate,
    )
    from shard_operator.source import fingerprint

    old, new = full("a", "1", "owner-1", **old_meta), full("a", "2", "owner-2", **new_meta)
    handlers = [For(WIDGETS), Owns(CONFIGMAPS, owner=WIDGETS, owner_kind="Widget"),
                Watches(CONFIGMAPS, lambda o: [f"ns/{o['metadata'].get('labels', {}).get('a', 'none')}"])]
    predicates = [GenerationChanged(), LabelsChanged(), AnnotationsChanged(), FinalizersChanged(),
                  DeletionTimestampChanged(), default_for_predicate()]
    whole = Event(EventType.MODIFIED, "ns/a", old, new)
    slim = Event(EventType.MODIFIED, "ns/a", fingerprint(old), new)
    assert "spec" not in slim.old  # type: ignore[operator]
    assert [h.keys_for(slim) for h in handlers] == [h.keys_for(whole) for h in handlers]
    assert [p(slim) for p in predicates] == [p(whole) for p in predicates]
    assert handlers[1].keys_for(slim) == ["ns/owner-1", "ns/owner-2"]  # Owns wakes the old owner too


def test_a_resync_of_fingerprints_is_not_written_to_the_cache_but_still_queues_the_key(client):
    from shard_operator.source import fingerprint

    dispatch = dispatcher(client, WIDGETS.name, For(WIDGETS))
    dispatch.dispatch(Event(EventType.ADDED, "ns/a", None, obj("a", rv="5", spec={"size": 1})))
    client.delete(KEYS.ready("s0"), KEYS.dirty)
    slim = fingerprint(obj("a", rv="5", spec={"size": 1}))
    client.flushall()  # the cache lost the object: a resync must not store the fingerprint in its place
    Membership(client, KEYS, "s0").heartbeat()
    Assigner(client, KEYS, member_ttl=60).rebalance()
    assert dispatch.dispatch(Event(EventType.MODIFIED, "ns/a", slim, slim)) == 1
    assert CacheReader(client).get(WIDGETS.name, "ns/a") is None
    assert queued(client) == ["ns/a"]


def test_a_batch_is_written_then_queued_once_and_leaves_the_state_one_by_one_would(client):
    events = [Event(EventType.ADDED, "ns/a", None, obj("a", rv="1")),
              Event(EventType.MODIFIED, "ns/a", obj("a", rv="1"), obj("a", rv="2", spec={"size": 2})),
              Event(EventType.DELETED, "ns/b", obj("b", rv="3"), None),
              Event(EventType.ADDED, "ns/b", None, obj("b", rv="4")),  # b re-created after its deletion
              Event(EventType.ADDED, "ns/c", None, obj("c", rv="5")),
              Event(EventType.DELETED, "ns/c", obj("c", rv="6"), None)]
    dispatch = dispatcher(client, WIDGETS.name, For(WIDGETS, predicates=()))
    CacheWriter(client).upsert(WIDGETS.name, obj("b", rv="2"))
    assert dispatch.dispatch_many(events) == 3
    reader = CacheReader(client)
    assert reader.get(WIDGETS.name, "ns/a")["spec"] == {"size": 2}  # type: ignore[index]
    assert reader.resource_version(WIDGETS.name, "ns/b") == "4"
    assert reader.get(WIDGETS.name, "ns/c") is None
    assert sorted(queued(client)) == ["ns/a", "ns/b", "ns/c"]
