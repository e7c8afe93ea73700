"""Handlers: map an informer event to the work queue keys it should wake up.

Third stage of the pipeline (docs/design.md §2.3): the leader's informer for each watched resource hands its
events to the handlers declared for that resource; each handler filters the event with its
predicate and returns keys (``namespace/name``, or ``name`` for a cluster-scoped primary), which the
router sends to their shards. Handlers are pure: no Redis, no API calls, so the leader can run them
inline on the informer's thread and tests need nothing but dicts.

- :class:`For` — the primary resource: the object's own key. Default predicate
  :func:`~shard_operator.handler.predicate.default_for_predicate` (no requeue on status writes).
- :class:`Owns` — objects the primary creates: the key of the object's *controller* owner
  (``ownerReferences`` entry with ``controller: true``) when that owner is of the primary's group and
  kind. Updates map both the old and the new owner, so a change of owner wakes both.
- :class:`Watches` — any resource: keys from a user function, called on the old and the new object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shard_operator.handler.predicate import And, Predicate, default_for_predicate
from shard_operator.source.event import Event
from shard_operator.source.resource import Resource, object_key

__all__ = ["EventHandler", "For", "MapFunc", "Owns", "Watches", "controller_owner_key"]

MapFunc = Callable[[dict[str, Any]], Iterable[str]]
Predicates = Predicate | Sequence[Predicate] | None


def _combine(predicates: Predicates, default: Predicate | None) -> Predicate | None:
    if predicates is None:
        return default
    if isinstance(predicates, Predicate):
        return predicates
    return And(*predicates) if predicates else None


def _unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def _group(api_version: str) -> str:
    group, _, _ = api_version.rpartition("/")
    return group


class EventHandler:
    """Maps events of ``resource`` to queue keys; subclasses implement :meth:`map`.

    ``predicate`` is None when every event passes. Contract of :meth:`keys_for`: no duplicates, no
    I/O, never raises for a well-formed event (an object without the metadata a handler needs maps to
    no key).
    """

    resource: Resource
    predicate: Predicate | None

    def keys_for(self, event: Event) -> list[str]:
        """The keys to add to the work queue for ``event``; empty when the predicate filters it."""
        if self.predicate is not None and not self.predicate(event):
            return []
        return _unique(self.map(event))

    def map(self, event: Event) -> Iterable[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.resource.name}, predicate={self.predicate!r})"


class For(EventHandler):
    """The primary resource: each event maps to the key of the object itself.

    ``predicates`` (one, or several that must all pass) replaces the default
    (``default_for_predicate()``); pass ``()`` to let every event through. ``kind`` (e.g.
    ``"Widget"``) is only needed to build :class:`Owns` handlers with :meth:`owns`.
    """

    def __init__(self, resource: Resource, *, kind: str | None = None, predicates: Predicates = None) -> None:
        self.resource = resource
        self.kind = kind
        self.predicate = _combine(predicates, default_for_predicate())

    def map(self, event: Event) -> Iterable[str]:
        try:
            return [object_key(event.object)]
        except (KeyError, TypeError):
            return []

    def owns(self, resource: Resource, *, predicates: Predicates = None) -> Owns:
        """An :class:`Owns` handler whose owner is this primary resource."""
        if self.kind is None:
            raise ValueError(f"For({self.resource.name}) needs kind= to build Owns handlers")
        return Owns(resource, owner=self.resource, owner_kind=self.kind, predicates=predicates)


def controller_owner_key(obj: dict[str, Any] | None, owner: Resource, owner_kind: str) -> str | None:
    """The key of ``obj``'s controller owner if it is a ``owner_kind`` of ``owner``'s group, else None.

    Only the ``ownerReferences`` entry with ``controller: true`` counts (there is at most one). The
    version in its ``apiVersion`` is ignored, as controller-runtime does: an owner reference may name
    any served version of the owner's kind.
    """
    if not obj:
        return None
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        if ref.get("kind") != owner_kind or _group(str(ref.get("apiVersion", ""))) != owner.group:
            return None
        name = ref.get("name")
        if not name:
            return None
        if not owner.namespaced:
            return str(name)
        namespace = meta.get("namespace")
        return f"{namespace}/{name}" if namespace else None  # a cluster-scoped object has no namespaced owner
    return None


class Owns(EventHandler):
    """Objects of ``resource`` controlled by an ``owner_kind`` of ``owner`` map to that owner's key.

    Every event passes unless ``predicates`` are given: an owned object's status often matters to
    its owner's reconcile (a Deployment becoming available, say).
    """

    def __init__(self, resource: Resource, *, owner: Resource, owner_kind: str,
                 predicates: Predicates = None) -> None:
        self.resource = resource
        self.owner = owner
        self.owner_kind = owner_kind
        self.predicate = _combine(predicates, None)

    def map(self, event: Event) -> Iterable[str]:
        for obj in (event.old, event.new):
            key = controller_owner_key(obj, self.owner, self.owner_kind)
            if key is not None:
                yield key


class Watches(EventHandler):
    """Any object of ``resource`` maps to the keys ``map_fn(obj)`` returns.

    ``map_fn`` runs on the old and the new object of an update (so an object that stops matching
    still wakes its former key) and on the one object of an add or delete. Every event passes unless
    ``predicates`` are given. ``map_fn`` must be pure and fast: it runs on the informer's thread.
    """

    def __init__(self, resource: Resource, map_fn: MapFunc, *, predicates: Predicates = None) -> None:
        self.resource = resource
        self.map_fn = map_fn
        self.predicate = _combine(predicates, None)

    def map(self, event: Event) -> Iterable[str]:
        objects = [event.old, event.new] if event.old is not event.new else [event.new]
        for obj in objects:
            if obj is not None:
                yield from self.map_fn(obj)
