"""The events an informer hands to its handler, and the default transform applied before them.

The informer (:mod:`shard_operator.source.informer`) turns watch events and relist differences into
:class:`Event` values; the leader's handler writes them to the shared cache and maps them to work
queue keys. Objects are plain dicts (the API's JSON), already passed through the transform.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventType", "Handler", "Transform", "drop_managed_fields"]

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class EventType(enum.StrEnum):
    """What happened to an object, as the informer saw it."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Event:
    """One change: ``old`` is None for ADDED, ``new`` is None for DELETED.

    For DELETED, ``old`` is the object's final state as the watch delivered it, or the last state the
    informer knew when the deletion was found by a relist. A resync delivers MODIFIED with
    ``old`` and ``new`` the same object. ``key`` is ``namespace/name`` (``name`` if cluster-scoped).
    """

    type: EventType
    key: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    @property
    def object(self) -> dict[str, Any]:
        """The newest state known: ``new``, or ``old`` for a deletion."""
        obj = self.new if self.new is not None else self.old
        assert obj is not None
        return obj

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


Handler = Callable[[Event], None]


def drop_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The default transform: remove ``metadata.managedFields`` (often half an object's size)."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return obj
