"""The shared cache keeps the newest version of each object and consistent indexes (real redis-server)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shard_operator.cache import CacheReader, CacheWriter
from shard_operator.errors import StorageError
from shard_operator.source import Event, EventType

pytestmark = pytest.mark.redis

KIND = "widgets.v1.example.com"


def obj(name: str, rv: int | str, namespace: str | None = "ns1", labels: dict[str, str] | None = None,
        owners: tuple[str, ...] = (), spec: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": str(rv), "labels": labels or {},
                            "uid": f"uid-{name}"}
    if namespace:
        meta["namespace"] = namespace
    if owners:
        meta["ownerReferences"] = [{"uid": uid, "kind": "Owner", "name": uid} for uid in owners]
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec or {}}


@pytest.fixture
def client(redis_url: str):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def writer(client) -> CacheWriter:
    return CacheWriter(client)


@pytest.fixture
def reader(client) -> CacheReader:
    return CacheReader(client)


def test_an_upserted_object_is_read_back_with_its_version(writer, reader):
    assert writer.upsert(KIND, obj("a", 5, spec={"size": 1}))
    assert reader.get(KIND, "ns1/a")["spec"] == {"size": 1}
    assert reader.resource_version(KIND, "ns1/a") == "5"
    assert reader.get(KIND, "ns1/missing") is None


def test_an_older_or_equal_resource_version_never_overwrites_a_newer_one(writer, reader):
    writer.upsert(KIND, obj("a", 10, spec={"v": "new"}))
    assert not writer.upsert(KIND, obj("a", 9, spec={"v": "old"}))
    assert not writer.upsert(KIND, obj("a", 10, spec={"v": "same"}))
    assert reader.get(KIND, "ns1/a")["spec"] == {"v": "new"}
    # compared as integers, not strings: "100" is newer than "99", even past 2**53
    assert writer.upsert(KIND, obj("a", 100, spec={"v": "100"}))
    assert not writer.upsert(KIND, obj("a", 99))
    assert writer.upsert(KIND, obj("a", 2**64 + 1, spec={"v": "huge"}))
    assert not writer.upsert(KIND, obj("a", 2**64))
    assert reader.get(KIND, "ns1/a")["spec"] == {"v": "huge"}


def test_a_deletion_older_than_the_stored_version_keeps_the_recreated_object(writer, reader):
    writer.upsert(KIND, obj("a", 20))
    assert not writer.delete(KIND, "ns1/a", "15")
    assert reader.get(KIND, "ns1/a") is not None
    assert writer.delete(KIND, "ns1/a", "21")
    assert reader.get(KIND, "ns1/a") is None
    assert not writer.delete(KIND, "ns1/a")


def test_the_namespace_index_lists_only_that_namespace_and_forgets_deleted_objects(writer, reader):
    writer.upsert_many(KIND, [obj("a", 1), obj("b", 2), obj("c", 3, namespace="ns2")])
    assert [o["metadata"]["name"] for o in reader.list(KIND, "ns1")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in reader.list(KIND)] == ["a", "b", "c"]
    writer.delete(KIND, "ns1/a")
    assert reader.keys(KIND, "ns1") == ["ns1/b"]
    assert reader.keys(KIND) == ["ns1/b", "ns2/c"]
    assert reader.list(KIND, "empty") == []


def test_the_owner_index_follows_owner_reference_changes_and_deletion(writer, reader):
    writer.upsert(KIND, obj("a", 1, owners=("o1",)))
    writer.upsert(KIND, obj("b", 2, owners=("o1", "o2")))
    assert [o["metadata"]["name"] for o in reader.list_owned(KIND, "o1")] == ["a", "b"]
    writer.upsert(KIND, obj("a", 3, owners=("o2",)))
    assert [o["metadata"]["name"] for o in reader.list_owned(KIND, "o1")] == ["b"]
    assert [o["metadata"]["name"] for o in reader.list_owned(KIND, "o2")] == ["a", "b"]
    writer.upsert(KIND, obj("b", 4))
    writer.delete(KIND, "ns1/a")
    assert reader.list_owned(KIND, "o1") == []
    assert reader.list_owned(KIND, "o2") == []


def test_a_stale_update_leaves_the_indexes_untouched(writer, reader):
    writer.upsert(KIND, obj("a", 5, owners=("o1",)))
    writer.upsert(KIND, obj("a", 4, owners=("o2",)))
    assert [o["metadata"]["name"] for o in reader.list_owned(KIND, "o1")] == ["a"]
    assert reader.list_owned(KIND, "o2") == []


def test_lists_filter_by_label_selector_on_cached_objects(writer, reader):
    writer.upsert_many(KIND, [obj("a", 1, labels={"tier": "front"}), obj("b", 2, labels={"tier": "back"}),
                              obj("c", 3, labels={})])
    names = lambda objects: [o["metadata"]["name"] for o in objects]  # noqa: E731
    assert names(reader.list(KIND, "ns1", "tier=front")) == ["a"]
    assert names(reader.list(KIND, label_selector="tier in (front,back)")) == ["a", "b"]
    assert names(reader.list(KIND, label_selector="!tier")) == ["c"]
    assert names(reader.list(KIND, label_selector={"tier": "back"})) == ["b"]


def test_cluster_scoped_objects_are_keyed_by_name_and_in_no_namespace(writer, reader):
    writer.upsert(KIND, obj("global", 1, namespace=None))
    assert reader.get(KIND, "global") is not None
    assert reader.keys(KIND) == ["global"]


def test_replace_removes_keys_missing_from_a_relist_but_keeps_newer_ones(writer, reader, client):
    writer.upsert_many(KIND, [obj("stale", 3), obj("kept", 4), obj("recent", 60), obj("other", 5, "ns2")])
    removed = writer.replace(KIND, [obj("kept", 4), obj("new", 50)], namespace="ns1", resource_version="50")
    assert removed == 1
    assert reader.keys(KIND) == ["ns1/kept", "ns1/new", "ns1/recent", "ns2/other"]
    removed = writer.replace(KIND, [obj("kept", 4)], resource_version="100")
    assert removed == 3
    assert reader.keys(KIND) == ["ns1/kept"]
    assert not [key for key in client.keys("*replace*")]


def test_a_replace_of_thousands_of_objects_is_one_consistent_view(writer, reader):
    objects = [obj(f"o{i:05d}", i + 1, owners=("boss",)) for i in range(3000)]
    writer.replace(KIND, objects, namespace="ns1", resource_version="5000")
    assert len(reader.list(KIND, "ns1")) == 3000
    assert len(reader.list_owned(KIND, "boss")) == 3000
    writer.replace(KIND, objects[:10], namespace="ns1", resource_version="5000")
    assert len(reader.list_owned(KIND, "boss")) == 10


def test_the_writer_applies_informer_events(writer, reader):
    handle = writer.handler_for(KIND)
    handle(Event(EventType.ADDED, "ns1/a", None, obj("a", 1)))
    handle(Event(EventType.MODIFIED, "ns1/a", obj("a", 1), obj("a", 2, spec={"x": 1})))
    assert reader.get(KIND, "ns1/a")["spec"] == {"x": 1}
    handle(Event(EventType.DELETED, "ns1/a", obj("a", 3), None))
    assert reader.get(KIND, "ns1/a") is None


def test_redis_errors_surface_as_storage_errors():
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                              retry=Retry(NoBackoff(), 0))
    with pytest.raises(StorageError):
        CacheReader(unreachable).get(KIND, "ns1/a")
    with pytest.raises(StorageError):
        CacheWriter(unreachable).upsert(KIND, obj("a", 1))
