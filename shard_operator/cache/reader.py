"""The workers' side of the shared cache: read objects without calling the API server.

A reconciler gets the object of its key, lists a namespace (optionally by label selector,
evaluated here on the cached objects) or lists the objects a given owner controls, each in one round
trip to Redis. What it reads was written by :class:`~shard_operator.cache.writer.CacheWriter` in the
leader and is at most as stale as the leader's watch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from shard_operator import codec
from shard_operator import keys as key_names
from shard_operator.cache.scripts import LIST_BY_INDEX
from shard_operator.cache.selector import LabelSelector
from shard_operator.source.resource import Resource
from shard_operator.storage import redis_errors

__all__ = ["CacheReader"]

Selector = str | Mapping[str, str] | LabelSelector | None
_Pairs = list[tuple[Any, Any]]
_Objects = list[dict[str, Any]]


class CacheReader:
    """Read-only access to the cache of each resource; objects are plain dicts, sorted by key in lists.

    This is ``ctx.cache`` (:class:`~shard_operator.context.ObjectCache`): every read names a
    :class:`~shard_operator.source.Resource`, the same object ``ctx.client`` writes with (the framework's
    own tools may also pass its cache name, ``Resource.name``, as the leader's writer does).

    Contract: ``get`` returns None for a key the cache does not hold (deleted, or not yet listed);
    the informer's ``has_synced`` tells when a kind's cache is complete. Redis errors raise
    :class:`~shard_operator.errors.StorageError`.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._list_by_index = client.register_script(LIST_BY_INDEX)

    def get(self, resource: Resource | str, key: str) -> dict[str, Any] | None:
        kind = _name(resource)
        with redis_errors():
            raw = self._redis.hget(key_names.objects_key(kind), key)
        return codec.loads(raw) if raw is not None else None

    def get_many(self, resource: Resource | str, keys_: list[str]) -> list[dict[str, Any] | None]:
        kind = _name(resource)
        if not keys_:
            return []
        with redis_errors():
            values = self._redis.hmget(key_names.objects_key(kind), keys_)
        return [codec.loads(raw) if raw is not None else None for raw in values]

    def resource_version(self, resource: Resource | str, key: str) -> str | None:
        kind = _name(resource)
        with redis_errors():
            raw = self._redis.hget(key_names.versions_key(kind), key)
        return _text(raw) if raw is not None else None

    def keys(self, resource: Resource | str, namespace: str | None = None) -> list[str]:
        kind = _name(resource)
        with redis_errors():
            if namespace is None:
                found = set(self._redis.hkeys(key_names.objects_key(kind)))
            else:
                found = self._redis.smembers(key_names.namespace_key(kind, namespace))
        return sorted(_text(key) for key in found)

    def list(self, resource: Resource | str, namespace: str | None = None,
             label_selector: Selector = None) -> _Objects:
        """Objects of ``resource`` in ``namespace`` (None: all) whose labels match ``label_selector``."""
        kind = _name(resource)
        selector = LabelSelector.parse(label_selector)
        with redis_errors():
            if namespace is None:
                pairs: _Pairs = list(self._redis.hgetall(key_names.objects_key(kind)).items())
            else:
                pairs = self._by_index(key_names.namespace_key(kind, namespace), kind)
        objects = (codec.loads(raw) for _, raw in sorted(pairs, key=lambda pair: _text(pair[0])))
        return [obj for obj in objects if selector.matches_object(obj)]

    def list_owned(self, resource: Resource | str, owner_uid: str) -> _Objects:
        """Objects of ``resource`` whose ``ownerReferences`` name ``owner_uid``."""
        kind = _name(resource)
        with redis_errors():
            pairs = self._by_index(key_names.owner_key(kind, owner_uid), kind)
        return [codec.loads(raw) for _, raw in sorted(pairs, key=lambda pair: _text(pair[0]))]

    def _by_index(self, index: str, kind: str) -> _Pairs:
        flat = self._list_by_index(keys=[index, key_names.objects_key(kind)])
        return list(zip(flat[::2], flat[1::2], strict=True))


def _name(resource: Resource | str) -> str:
    return resource.name if isinstance(resource, Resource) else resource


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
