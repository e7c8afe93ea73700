"""A relist replaces the cache in bounded steps, and one interrupted midway is repaired by the next.

The removal of stale keys walks the scope with a cursor, a few keys per script call; the tests make
the step tiny so every chunk boundary is crossed, on fakeredis and the real redis-server (with more
than 512 keys, so that Redis keeps the hash as a table and HSCAN really walks it in steps).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from shard_operator.cache import CacheWriter
from shard_operator.cache import writer as writer_module
from shard_operator.errors import StorageError
from shard_operator.keys import hashes_key, namespace_key, objects_key, versions_key
from shard_operator.source import HashRange

KIND = "widgets.v1.example.com"


@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.redis)])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        made: redis.Redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        made = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield made
    made.close()


@pytest.fixture(autouse=True)
def tiny_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "_SCAN", 3)


def obj(name: str, rv: int, namespace: str = "ns1") -> dict[str, Any]:
    return {"kind": "Widget", "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv)}}


def cached(client: redis.Redis) -> dict[str, str]:
    return {key.decode(): rv.decode() for key, rv in client.hgetall(versions_key(KIND)).items()}


def test_a_relist_over_many_steps_removes_exactly_the_keys_it_lacks(client):
    writer = CacheWriter(client)
    writer.upsert_many(KIND, [obj(f"a{i}", 1) for i in range(700)] + [obj(f"b{i}", 1, "ns2") for i in range(10)])
    listed = [obj(f"a{i}", 2) for i in range(0, 700, 2)] + [obj(f"b{i}", 2, "ns2") for i in range(10)]
    assert writer.replace(KIND, listed, resource_version="2") == 350
    assert cached(client) == {f"{o['metadata']['namespace']}/{o['metadata']['name']}": "2" for o in listed}
    assert client.scard(namespace_key(KIND, "ns1")) == 350
    assert not list(client.scan_iter(match="*replace:*")), "the relist's token set is deleted"


def test_a_namespace_relist_in_steps_touches_only_its_namespace_and_keeps_newer_objects(client):
    writer = CacheWriter(client)
    writer.upsert_many(KIND, [obj(f"a{i}", 1) for i in range(12)] + [obj("late", 9), obj("other", 1, "ns2")])
    assert writer.replace(KIND, [obj("a0", 5)], namespace="ns1", resource_version="5") == 11
    assert cached(client) == {"ns1/a0": "5", "ns1/late": "9", "ns2/other": "1"}


def test_a_relist_interrupted_midway_then_a_new_relist_ends_with_exactly_the_listed_objects(client, monkeypatch):
    writer = CacheWriter(client)
    writer.upsert_many(KIND, [obj(f"old{i}", 1) for i in range(700)])
    step, calls = writer._replace_step, []

    def dies_after_two(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 2:
            raise StorageError("the leader lost Redis mid-relist")
        return step(*args, **kwargs)

    monkeypatch.setattr(writer, "_replace_step", dies_after_two)
    with pytest.raises(StorageError):
        writer.replace(KIND, [obj(f"new{i}", 2) for i in range(10)], resource_version="2")
    partial = cached(client)
    assert {f"ns1/new{i}" for i in range(10)} <= set(partial), "the listed objects were written first"
    assert len(partial) > 10, "stale keys were left behind by the interruption"
    monkeypatch.setattr(writer, "_replace_step", step)
    final = [obj(f"new{i}", 3) for i in range(5, 15)]
    writer.replace(KIND, final, resource_version="3")
    assert cached(client) == {f"ns1/new{i}": "3" for i in range(5, 15)}
    assert sorted(client.hkeys(objects_key(KIND))) == sorted(f"ns1/new{i}".encode() for i in range(5, 15))
    assert client.scard(namespace_key(KIND, "ns1")) == 10


def ranged(name: str, rv: int, uid: str, namespace: str = "ns1") -> dict[str, Any]:
    made = obj(name, rv, namespace)
    made["metadata"]["uid"] = uid
    return made


def test_a_ranged_relist_removes_only_keys_whose_uid_hashes_into_its_range(client):
    """Sharded ingest: each writer relists its range of the uid hash and leaves the others' objects alone."""
    lower, upper = HashRange.split(2)
    writer = CacheWriter(client, uid_hashes=True)
    # uids like the API server's (random UUIDs): FNV-1a's top bits barely change with a string's last byte.
    objects = [ranged(f"o{i}", 1, str(uuid.uuid5(uuid.NAMESPACE_OID, str(i))), namespace="ns1" if i % 3 else "ns2")
               for i in range(40)]
    writer.upsert_many(KIND, objects)
    in_lower = [o for o in objects if lower.contains(o)]
    in_upper = [o for o in objects if upper.contains(o)]
    assert in_lower and in_upper
    kept = in_lower[::2]
    assert writer.replace(KIND, kept, resource_version="1", shard_range=lower) == len(in_lower) - len(kept)
    expected = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in kept + in_upper}
    assert set(cached(client)) == expected
    # A namespace's ranged relist: the same, within the namespace.
    ns2_upper = [o for o in in_upper if o["metadata"]["namespace"] == "ns2"]
    writer.replace(KIND, [], namespace="ns2", resource_version="1", shard_range=upper)
    assert set(cached(client)) == expected - {f"ns2/{o['metadata']['name']}" for o in ns2_upper}
    assert set(client.hkeys(hashes_key(KIND))) == {key.encode() for key in cached(client)}


def test_a_ranged_relist_needs_a_writer_that_records_uid_hashes(client):
    with pytest.raises(ValueError, match="uid_hashes=True"):
        CacheWriter(client).replace(KIND, [], shard_range=HashRange.split(2)[0])


def test_a_sharded_writer_never_brings_a_deleted_object_back_with_an_older_event(client):
    """Two members watch a range while it is handed over: one may write an older event of a key after the
    other wrote its deletion; the deletion's tombstone refuses it, and a re-creation is written."""
    writer = CacheWriter(client, uid_hashes=True)
    writer.upsert(KIND, ranged("w", 5, "uid-1"))
    assert writer.delete(KIND, "ns1/w", "7")
    assert not writer.upsert(KIND, ranged("w", 6, "uid-1"))  # the other member's late MODIFIED
    assert not writer.delete(KIND, "ns1/w", "6")
    assert writer.replace(KIND, [ranged("w", 5, "uid-1")], resource_version="5", shard_range=HashRange(0, 1 << 64)) == 0
    assert cached(client) == {}
    assert writer.upsert(KIND, ranged("w", 9, "uid-2"))  # re-created after the deletion
    assert cached(client) == {"ns1/w": "9"}
