"""Predicates: which informer events are worth a reconcile.

They sit between the informer (:mod:`shard_operator.source`) and the handlers
(:mod:`shard_operator.handler.mapping`): the leader asks each handler's predicate about every
:class:`~shard_operator.source.Event` before mapping it to queue keys, so changes a reconciler does
not care about (its own status writes, above all) never reach the work queue.

Semantics follow controller-runtime's ``predicate`` package: the "changed" predicates compare the
``old`` and ``new`` objects of a MODIFIED event and let ADDED and DELETED events through. Two
deliberate differences, both erring towards a reconcile (extra reconciles are harmless to a
level-based reconciler, missed ones are not):

- A resync (MODIFIED with ``old is new``, or both at the same resourceVersion) passes every change
  predicate except :class:`ResourceVersionChanged`, whose whole purpose is to filter resyncs out.
  Resync is off unless configured, and when it is configured it is meant to reconcile.
- :class:`GenerationChanged` passes when neither object carries ``metadata.generation`` (resources
  that do not track it, such as ConfigMaps), where controller-runtime would drop every update.

Predicates are pure functions of the event and compose with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shard_operator.source.event import Event, EventType

__all__ = [
    "And",
    "AnnotationsChanged",
    "Custom",
    "DeletionTimestampChanged",
    "FinalizersChanged",
    "GenerationChanged",
    "LabelsChanged",
    "Not",
    "Or",
    "Predicate",
    "ResourceVersionChanged",
    "default_for_predicate",
    "is_resync",
]


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def is_resync(event: Event) -> bool:
    """True for a MODIFIED event that carries no change: the informer's periodic re-delivery."""
    if event.type is not EventType.MODIFIED or event.old is None or event.new is None:
        return False
    if event.old is event.new:
        return True
    old_rv = _meta(event.old).get("resourceVersion")
    return bool(old_rv) and old_rv == _meta(event.new).get("resourceVersion")


class Predicate:
    """Decides whether an event passes; subclasses implement :meth:`__call__`.

    ``a & b``, ``a | b`` and ``~a`` build :class:`And`, :class:`Or` and :class:`Not`.
    """

    def __call__(self, event: Event) -> bool:
        raise NotImplementedError

    def __and__(self, other: Predicate) -> Predicate:
        return And(self, other)

    def __or__(self, other: Predicate) -> Predicate:
        return Or(self, other)

    def __invert__(self) -> Predicate:
        return Not(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _UpdatePredicate(Predicate):
    """A predicate that lets ADDED, DELETED and resync events through and judges real updates."""

    def __call__(self, event: Event) -> bool:
        if event.type is not EventType.MODIFIED or event.old is None or event.new is None:
            return True
        if is_resync(event):
            return True
        return self.updated(event.old, event.new)

    def updated(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        raise NotImplementedError


class GenerationChanged(_UpdatePredicate):
    """An update passes when ``metadata.generation`` changed: a spec change, not a status write."""

    def updated(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        old_generation, new_generation = _meta(old).get("generation"), _meta(new).get("generation")
        if old_generation is None and new_generation is None:
            return True  # the resource does not track generation: every update may matter
        return bool(old_generation != new_generation)


class LabelsChanged(_UpdatePredicate):
    """An update passes when ``metadata.labels`` changed."""

    def updated(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        return (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {})


class AnnotationsChanged(_UpdatePredicate):
    """An update passes when ``metadata.annotations`` changed."""

    def updated(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        return (_meta(old).get("annotations") or {}) != (_meta(new).get("annotations") or {})


class FinalizersChanged(_UpdatePredicate):
    """An update passes when ``metadata.finalizers`` changed (added, removed or reordered)."""

    def updated(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        return list(_meta(old).get("finalizers") or []) != list(_meta(new).get("finalizers") or [])


class DeletionTimestampChanged(_UpdatePredicate):
    """An update passes when ``metadata.deletionTimestamp`` was set (or changed): deletion began."""

    def updated(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        return bool(_meta(old).get("deletionTimestamp") != _meta(new).get("deletionTimestamp"))


class ResourceVersionChanged(Predicate):
    """Every real change passes; only resyncs (no new resourceVersion) are filtered out."""

    def __call__(self, event: Event) -> bool:
        return not is_resync(event)


class And(Predicate):
    """Passes when every one of ``predicates`` passes (and when there are none)."""

    def __init__(self, *predicates: Predicate) -> None:
        self.predicates = predicates

    def __call__(self, event: Event) -> bool:
        return all(predicate(event) for predicate in self.predicates)

    def __repr__(self) -> str:
        return f"And({', '.join(map(repr, self.predicates))})"


class Or(Predicate):
    """Passes when any of ``predicates`` passes (never when there are none)."""

    def __init__(self, *predicates: Predicate) -> None:
        self.predicates = predicates

    def __call__(self, event: Event) -> bool:
        return any(predicate(event) for predicate in self.predicates)

    def __repr__(self) -> str:
        return f"Or({', '.join(map(repr, self.predicates))})"


class Not(Predicate):
    """Passes when ``predicate`` does not."""

    def __init__(self, predicate: Predicate) -> None:
        self.predicate = predicate

    def __call__(self, event: Event) -> bool:
        return not self.predicate(event)

    def __repr__(self) -> str:
        return f"Not({self.predicate!r})"


class Custom(Predicate):
    """Wraps a plain function ``fn(event) -> bool``; it sees every event type, resyncs included."""

    def __init__(self, fn: Callable[[Event], bool]) -> None:
        self.fn = fn

    def __call__(self, event: Event) -> bool:
        return bool(self.fn(event))

    def __repr__(self) -> str:
        return f"Custom({getattr(self.fn, '__qualname__', self.fn)!r})"


def default_for_predicate() -> Predicate:
    """The primary resource's default: spec changes, deletion and finalizer changes, never status.

    ``GenerationChanged() | DeletionTimestampChanged() | FinalizersChanged()``: a reconciler's own
    status writes do not requeue it, while creation, deletion (the DELETED event, and the update that
    sets ``deletionTimestamp`` on an object with finalizers) and finalizer changes always do.
    """
    return Or(GenerationChanged(), DeletionTimestampChanged(), FinalizersChanged())
