"""The leader's side of the shared cache: informer events in, Redis hashes and indexes out.

The leader wires each informer to a :class:`CacheWriter` (``handler_for`` / ``list_hook_for``); the
workers read what it writes through :class:`~shard_operator.cache.reader.CacheReader`. Every write is
one Lua script (:mod:`.scripts`) and batches are pipelined, so a relist of N objects costs about
N / 500 round trips and no script touches more than 500 keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from shard_operator import codec, keys
from shard_operator.cache.scripts import DELETE, REPLACE_STEP, UPSERT
from shard_operator.source.event import Event, EventType, Handler
from shard_operator.source.hashrange import HashRange, uid_hash
from shard_operator.source.reflector import StreamingListHook
from shard_operator.source.resource import object_key
from shard_operator.storage import pipelined_script_calls, redis_errors

__all__ = ["CacheWriter"]

_BATCH = 500
_SCAN = 50  # keys a relist's removal step looks at per script call (each removal touches ~5 keys)
_TOMBSTONE_SECONDS = 600  # sharded ingest: how long a deletion refuses older writes of its key


class CacheWriter:
    """Writes the latest state of each object of a kind, with its namespace and owner indexes.

    Contract:

    - ``upsert`` stores an object unless the cache holds the same or a newer resourceVersion
      (compared as integers, atomically): a late or replayed event never rolls the cache back.
    - ``delete`` removes an object and its index entries, unless the cache holds a version newer
      than the deletion's (the object was re-created meanwhile).
    - ``replace`` makes a scope (one namespace, or the whole kind) equal to a relist: it upserts the
      objects and removes keys the list lacks, but keeps objects newer than the list's version.
    - One writer (the leader's informer) per kind; Redis errors raise
      :class:`~shard_operator.errors.StorageError`.
    - Sharded ingest (several writers, each listing and watching one range of the uid hash,
      :class:`~shard_operator.source.hashrange.HashRange`): with ``uid_hashes=True`` every write also
      records the object's uid hash, and ``replace(..., shard_range=)`` removes only keys whose recorded
      hash lies in that range, so one writer's relist never removes another range's objects. A key
      written without a hash belongs to no range: only an unranged replace removes it. Such a writer
      also keeps a tombstone of each deletion's resourceVersion for ten minutes, so an older event
      of the key from another member's overlapping informer (a range being handed over) cannot bring
      a deleted object back.
    """

    def __init__(self, client: redis.Redis, *, uid_hashes: bool = False) -> None:
        self._redis = client
        self._uid_hashes = uid_hashes
        self._upsert = client.register_script(UPSERT)
        self._delete = client.register_script(DELETE)
        self._replace_step = client.register_script(REPLACE_STEP)

    def upsert(self, kind: str, obj: dict[str, Any]) -> bool:
        """Store ``obj``; False when the cache already holds this or a newer version."""
        with redis_errors():
            return bool(self._upsert(keys=[keys.objects_key(kind)], args=self._upsert_args(kind, obj)))

    def upsert_many(self, kind: str, objects: Iterable[dict[str, Any]]) -> int:
        """Store many objects in pipelined batches; returns how many were written."""
        written = 0
        batch: list[dict[str, Any]] = []
        for obj in objects:
            batch.append(obj)
            if len(batch) == _BATCH:
                written += self._upsert_batch(kind, batch)
                batch = []
        if batch:
            written += self._upsert_batch(kind, batch)
        return written

    def delete(self, kind: str, key: str, resource_version: str | None = None) -> bool:
        """Remove ``key``; with ``resource_version`` (the deletion's), only if not re-created since."""
        with redis_errors():
            keep = str(_TOMBSTONE_SECONDS) if self._uid_hashes else ""
            return bool(self._delete(keys=[keys.objects_key(kind)],
                                     args=[keys.kind_prefix(kind), key, resource_version or "", keep]))

    def replace(self, kind: str, objects: Iterable[dict[str, Any]], *, namespace: str | None = None,
                resource_version: str | None = None, shard_range: HashRange | None = None) -> int:
        """Make ``namespace`` (None: every key of the kind) hold exactly ``objects``, as listed at
        ``resource_version``; returns how many keys were removed. With ``shard_range`` (a writer made
        with ``uid_hashes=True``), the scope is that range's part of the namespace or kind.

        A staged replace, every script bounded by a few hundred keys: the objects are upserted into the
        live hashes and their keys recorded in a relist token set, then the scope is scanned with a
        cursor and each key missing from the set is removed. Interrupted, it leaves the listed objects
        written and some stale keys not yet removed (the token set expires); the next relist removes
        them, since its scan covers every key of the scope. ``objects`` is read once, so a relist can
        stream its pages through here without the leader holding the whole list.
        """
        if shard_range is not None and not self._uid_hashes:
            raise ValueError("a ranged replace needs a CacheWriter made with uid_hashes=True")
        bounds = [f"{shard_range.start:016x}", f"{shard_range.end:016x}"] if shard_range else ["", ""]
        names: list[str] = []

        def named() -> Iterator[dict[str, Any]]:
            for obj in objects:
                names.append(object_key(obj))
                yield obj

        self.upsert_many(kind, named())
        listed = keys.replace_key(kind, uuid.uuid4().hex)
        args = [keys.kind_prefix(kind), listed, resource_version or "", namespace or ""]
        removed, cursor = 0, "0"
        with redis_errors():
            pipe = self._redis.pipeline(transaction=False)
            for start in range(0, len(names), _BATCH):
                pipe.sadd(listed, *names[start:start + _BATCH])
            pipe.expire(listed, 600)  # deleted at the end; expires if this process dies first
            pipe.execute()
            while True:
                cursor, count = self._replace_step(keys=[keys.objects_key(kind)],
                                                   args=[*args, cursor, str(_SCAN), *bounds])
                removed, cursor = removed + int(count), _text(cursor)
                if cursor == "0":
                    break
            self._redis.unlink(listed)  # freed off the main thread: a big set would block Redis
        return removed

    def apply(self, kind: str, event: Event) -> bool:
        """Write one informer event; returns whether the cache changed."""
        if event.type is EventType.DELETED:
            return self.delete(kind, event.key, event.resource_version or None)
        assert event.new is not None
        return self.upsert(kind, event.new)

    def handler_for(self, kind: str) -> Handler:
        """An informer handler that writes each event of ``kind`` to the cache."""
        def handle(event: Event) -> None:
            self.apply(kind, event)
        return handle

    def list_hook_for(self, kind: str, shard_range: HashRange | None = None) -> StreamingListHook:
        """An informer ``on_list_streamed`` hook that replaces the listed scope of ``kind`` in the cache
        (for an informer of ``shard_range``, that range's part of it)."""
        def on_list(namespace: str | None, objects: Iterator[dict[str, Any]], resource_version: str) -> None:
            self.replace(kind, objects, namespace=namespace, resource_version=resource_version,
                         shard_range=shard_range)
        return on_list

    def _upsert_batch(self, kind: str, batch: list[dict[str, Any]]) -> int:
        objects_key = keys.objects_key(kind)
        with redis_errors():
            return sum(int(result) for result in pipelined_script_calls(
                self._redis, self._upsert, [([objects_key], self._upsert_args(kind, obj)) for obj in batch]))

    def _upsert_args(self, kind: str, obj: dict[str, Any]) -> list[str | bytes]:
        args = _upsert_args(kind, obj)
        if self._uid_hashes:
            args.append(f"{uid_hash(str((obj.get('metadata') or {}).get('uid', ''))):016x}")
        return args


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _upsert_args(kind: str, obj: dict[str, Any]) -> list[str | bytes]:
    meta = obj.get("metadata") or {}
    owners = ",".join(sorted({str(ref["uid"]) for ref in meta.get("ownerReferences") or [] if ref.get("uid")}))
    return [keys.kind_prefix(kind), object_key(obj), str(meta.get("resourceVersion") or "0"),
            codec.dumps(obj), owners]
