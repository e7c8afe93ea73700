"""The events an informer hands to its handler, and the default transform applied before them.

The informer (:mod:`shard_operator.source.informer`) turns watch events and relist differences into
:class:`Event` values; the leader's handler writes them to the shared cache and maps them to work
queue keys. Objects are plain dicts (the API's JSON), already passed through the transform.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FINGERPRINT_FIELDS", "Event", "EventType", "Handler", "Transform", "drop_managed_fields", "fingerprint"]

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class EventType(enum.StrEnum):
    """What happened to an object, as the informer saw it."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ``old`` is None for ADDED, ``new`` is None for DELETED.

    ``new`` (and ``old`` of a DELETED event from the watch) is the whole object. Any other ``old`` is
    the informer's :func:`fingerprint` of the last state it saw: the leader keeps no full copy of
    the objects (the shared cache is the one full copy), so an ``old`` object carries only
    ``apiVersion``, ``kind`` and the :data:`FINGERPRINT_FIELDS` of its metadata. For DELETED, ``old``
    is the object's final state as the watch delivered it, or the fingerprint of the last state the
    informer knew when the deletion was found by a relist. A resync delivers MODIFIED with ``old``
    and ``new`` the same fingerprint. ``key`` is ``namespace/name`` (``name`` if cluster-scoped).

    ``listed`` marks the differences found by a streamed relist (``on_list_streamed``): the list
    hook has already written the whole objects, and ``new`` too is only the fingerprint.
    """

    type: EventType
    key: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    listed: bool = False

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


FINGERPRINT_FIELDS = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations",
                      "deletionTimestamp", "finalizers", "ownerReferences")
"""The metadata an informer keeps per key: what relist differences, the predicates and the
``Owns`` mapping read from an old object."""

_INTERNED = ("name", "namespace")


def fingerprint(obj: dict[str, Any]) -> dict[str, Any]:
    """What the informer remembers of ``obj``: ``apiVersion``, ``kind`` and the metadata fields in
    :data:`FINGERPRINT_FIELDS`; ``spec``, ``status`` and the rest are left to the shared cache.

    Annotations are kept whole, so that ``AnnotationsChanged`` compares them with the new object's
    exactly; an annotation as large as the object (kubectl's last-applied-configuration) costs the
    leader its size per key.
    """
    meta = obj.get("metadata") or {}
    slim: dict[str, Any] = {name: meta[name] for name in FINGERPRINT_FIELDS if name in meta}
    for name in _INTERNED:
        value = slim.get(name)
        if isinstance(value, str):
            slim[name] = sys.intern(value)
    labels = slim.get("labels")
    if isinstance(labels, dict):  # replicas share their labels: one copy of each string
        slim["labels"] = {_intern(k): _intern(v) for k, v in labels.items()}
    annotations = slim.get("annotations")
    if isinstance(annotations, dict):
        slim["annotations"] = {_intern(k): _intern(v) for k, v in annotations.items()}
    owners = slim.get("ownerReferences")
    if isinstance(owners, list):  # siblings share their owner: one copy of its kind, version and name
        slim["ownerReferences"] = [{_intern(k): _intern(v) for k, v in ref.items()} if isinstance(ref, dict)
                                   else ref for ref in owners]
    head: dict[str, Any] = {}
    for name in ("apiVersion", "kind"):
        if isinstance(obj.get(name), str):
            head[name] = sys.intern(obj[name])
    head["metadata"] = slim
    return head


def _intern(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) and len(value) <= 64 else value

