"""The namespaces the leader watches now, published in Redis so that nothing outside them is reconciled.

Where it sits: the leader (:class:`~shard_operator.manager.leading.LeaderRunner`) publishes its
:class:`Scope` before its informers start and removes the cached objects of the namespaces it no
longer watches; a worker asks :class:`ScopeReader` before it reconciles a key. Without this, a
restart with a narrower ``--namespace`` left the dropped namespaces' keys queued and their objects
cached, and the workers reconciled and wrote them.

Namespaces restrict only namespaced objects: a cluster-scoped key (``name``, no namespace) is always in
scope, since ``--namespace`` cannot select it; the informer of a cluster-scoped resource lists all of
it whatever the namespaces. Without this, a cluster-scoped primary run with ``--namespace`` had every key
skipped without a word.

A worker checks its own process's namespaces as well as the published scope (see
:class:`~shard_operator.worker.runner.ShardWorker`): after a restart with a narrower ``--namespace`` the
scope in Redis is the old leader's, wider one, until the new leader wins the Lease and publishes its own.

A label or field selector is not part of the scope. Within a run, an object that stops matching comes
as a DELETED watch event: it leaves the cache and its key reaches the reconciler as deleted
(``ctx.get()`` is None), as in client-go. After a restart with a narrower selector, the new leader's
first list removes the unselected objects from the cache and queues none of them; a key of one still
queued from the previous run is reconciled once as deleted, or, if a worker takes it before that first
list ends, with the previous run's cached copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from shard_operator import keys as cache_keys
from shard_operator.keys import Keys
from shard_operator.storage import redis_errors

__all__ = ["Scope", "ScopeReader", "namespaces_cached", "scope_key"]


def scope_key(controller: str) -> str:
    """The Redis key holding the controller's scope (in the controller's hash slot)."""
    return Keys.for_controller(controller).scope


@dataclass(frozen=True)
class Scope:
    """Namespaces watched for the primary resource; ``namespaces=None`` means all of them.

    The namespaces restrict namespaced keys only: a cluster-scoped key is in every scope."""

    namespaces: frozenset[str] | None = None

    @classmethod
    def of(cls, namespaces: Iterable[str] | None) -> Scope:
        return cls(None if namespaces is None else frozenset(namespaces))

    def contains(self, key: str) -> bool:
        """Whether a work-queue key (``namespace/name``, or ``name`` if cluster-scoped) is in scope;
        always True for a cluster-scoped key."""
        if self.namespaces is None:
            return True
        namespace, slash, _ = key.partition("/")
        return not slash or namespace in self.namespaces

    def publish(self, client: redis.Redis, controller: str) -> None:
        value = None if self.namespaces is None else sorted(self.namespaces)
        client.set(scope_key(controller), json.dumps({"namespaces": value}))

    @classmethod
    def load(cls, client: redis.Redis, controller: str) -> Scope:
        """The published scope; everything when none was published (an older leader)."""
        with redis_errors():
            raw = client.get(scope_key(controller))
        if raw is None:
            return cls()
        return cls.of(json.loads(raw).get("namespaces"))


class ScopeReader:
    """A worker's view of the published scope, read again at most every ``max_age`` seconds.

    Contract: :meth:`contains` is False for a key whose namespace the leader no longer watches; the
    worker then marks the key done without reconciling it (no write, no finalizer handling).
    """

    def __init__(self, client: redis.Redis, controller: str, *, max_age: float = 1.0) -> None:
        self._client, self._controller, self._max_age = client, controller, max_age
        self._scope = Scope()
        self._read_at = float("-inf")

    def contains(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._read_at >= self._max_age:
            self._scope = Scope.load(self._client, self._controller)
            self._read_at = now
        return self._scope.contains(key)


def namespaces_cached(client: redis.Redis, kind: str) -> set[str]:
    """The namespaces that have objects of ``kind`` in the shared cache (from its namespace indexes)."""
    prefix = cache_keys.namespace_key(kind, "")
    found = set()
    for name in client.scan_iter(match=prefix + "*", count=500):
        text = name.decode() if isinstance(name, bytes) else str(name)
        found.add(text[len(prefix):])
    return found
