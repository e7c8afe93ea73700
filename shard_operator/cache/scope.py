"""The namespaces and selectors the leader watches now, published in Redis so that nothing outside them is reconciled.

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

The label and field selectors of the primary resource are part of the scope as the selectors of the
leader's completed first list (:class:`Selectors`). Within a run, an object that stops matching comes as
a DELETED watch event: it leaves the cache and its key reaches the reconciler as deleted (``ctx.get()``
is None), as in client-go. After a restart with a narrower selector, the new leader's first list removes
the unselected objects from the cache and queues none of them; until that list is in the cache, the
cache still holds the previous run's objects, selected or not. So the leader publishes its scope in two
steps: before its informers start, the namespaces with the selectors marked not listed yet
(``listed=None``); once the primary resource's first list has been applied to the cache, the selectors
it listed with (:class:`~shard_operator.manager.leading.LeaderRunner`, checked every coordinator tick). A
worker that knows its own selectors (a manager's always does) reconciles a key only once the published
``listed`` selectors are its own (:meth:`ScopeReader.lists_with`); until then it adds the key back after
about a second, without a reconcile, so a key of an object the new selectors no longer match, still
queued from the previous run, is reconciled once as deleted instead of as the previous run's cached copy.

A scope record without selectors (``tracks_selectors`` False: written by a leader of a version before
this one, or nothing published yet) counts as unknown and reconciles as before, so an upgrade never
stalls its workers behind an older leader that will never publish selectors; the window this leaves is
the one of that older version, and it closes as soon as a leader of this version publishes its scope.
A worker whose selectors differ from the leader's for longer (pods of one operator run with different
``--label-selector``) waits, and logs so at most every 30 s, until a leader with its selectors leads.
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

__all__ = ["Scope", "ScopeReader", "Selectors", "namespaces_cached", "scope_key"]


def scope_key(controller: str) -> str:
    """The Redis key holding the controller's scope (in the controller's hash slot)."""
    return Keys.for_controller(controller).scope


@dataclass(frozen=True)
class Selectors:
    """The label and field selectors the primary resource is listed with (None or empty: none)."""

    label: str | None = None
    field: str | None = None

    @classmethod
    def of(cls, label: str | None, field: str | None) -> Selectors:
        return cls(label or None, field or None)

    def selects_all(self) -> bool:
        """No selector: every object of the resource is selected, so no cached one can be out of scope."""
        return self.label is None and self.field is None

    def __str__(self) -> str:
        return f"label selector {self.label or '(none)'}, field selector {self.field or '(none)'}"


@dataclass(frozen=True)
class Scope:
    """Namespaces watched for the primary resource (``namespaces=None``: all of them), and the selectors
    of the leader's completed first list of it.

    The namespaces restrict namespaced keys only: a cluster-scoped key is in every scope. ``listed`` is
    None while the leader's first list is not in the cache yet; ``tracks_selectors`` is False for a
    record without selectors (an older leader's, or none published), whose ``listed`` means nothing."""

    namespaces: frozenset[str] | None = None
    listed: Selectors | None = None
    tracks_selectors: bool = False

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

    def lists_with(self, selectors: Selectors) -> bool:
        """Whether the cache holds the leader's list with ``selectors``: True once the first list with them
        is in the cache, for a record that does not track selectors (unknown: reconcile as before), and
        always for no selectors (a worker that selects every object never waits: a cached copy, even one
        from a previous run with other selectors, is never outside its scope)."""
        return selectors.selects_all() or not self.tracks_selectors or self.listed == selectors

    def publish(self, client: redis.Redis, controller: str) -> None:
        value: dict[str, object] = {"namespaces": None if self.namespaces is None else sorted(self.namespaces)}
        if self.tracks_selectors:
            value["selectors"] = (None if self.listed is None
                                  else {"label": self.listed.label, "field": self.listed.field})
        client.set(scope_key(controller), json.dumps(value))

    @classmethod
    def load(cls, client: redis.Redis, controller: str) -> Scope:
        """The published scope; everything, selectors unknown, when none was published."""
        with redis_errors():
            raw = client.get(scope_key(controller))
        if raw is None:
            return cls()
        record = json.loads(raw)
        namespaces = cls.of(record.get("namespaces")).namespaces
        if "selectors" not in record:  # an older leader's record
            return cls(namespaces)
        listed = record["selectors"]
        return cls(namespaces, None if listed is None else Selectors.of(listed.get("label"), listed.get("field")),
                   tracks_selectors=True)


class ScopeReader:
    """A worker's view of the published scope, read again at most every ``max_age`` seconds.

    Contract: :meth:`contains` is False for a key whose namespace the leader no longer watches; the
    worker then marks the key done without reconciling it (no write, no finalizer handling).
    :meth:`lists_with` is False while the leader's first list with the worker's selectors is not in
    the cache; the worker then adds the key back for later without reconciling it.
    """

    def __init__(self, client: redis.Redis, controller: str, *, max_age: float = 1.0) -> None:
        self._client, self._controller, self._max_age = client, controller, max_age
        self._scope = Scope()
        self._read_at = float("-inf")

    def _current(self) -> Scope:
        now = time.monotonic()
        if now - self._read_at >= self._max_age:
            self._scope = Scope.load(self._client, self._controller)
            self._read_at = now
        return self._scope

    def contains(self, key: str) -> bool:
        return self._current().contains(key)

    def lists_with(self, selectors: Selectors) -> bool:
        return self._current().lists_with(selectors)

    @property
    def listed(self) -> Selectors | None:
        """The selectors of the published scope's completed list (None: not yet, or unknown), as last read."""
        return self._scope.listed


def namespaces_cached(client: redis.Redis, kind: str) -> set[str]:
    """The namespaces that have objects of ``kind`` in the shared cache (from its namespace indexes)."""
    prefix = cache_keys.namespace_key(kind, "")
    found = set()
    for name in client.scan_iter(match=prefix + "*", count=500):
        text = name.decode() if isinstance(name, bytes) else str(name)
        found.add(text[len(prefix):])
    return found
