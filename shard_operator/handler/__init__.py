"""Handlers and predicates: which informer events wake which work queue keys (docs/design.md §2.3)."""

from shard_operator.handler.mapping import EventHandler, For, MapFunc, Owns, Watches, controller_owner_key
from shard_operator.handler.predicate import (
    And,
    AnnotationsChanged,
    Custom,
    DeletionTimestampChanged,
    FinalizersChanged,
    GenerationChanged,
    LabelsChanged,
    Not,
    Or,
    Predicate,
    ResourceVersionChanged,
    default_for_predicate,
    is_resync,
)

__all__ = [
    "And",
    "AnnotationsChanged",
    "Custom",
    "DeletionTimestampChanged",
    "EventHandler",
    "FinalizersChanged",
    "For",
    "GenerationChanged",
    "LabelsChanged",
    "MapFunc",
    "Not",
    "Or",
    "Owns",
    "Predicate",
    "ResourceVersionChanged",
    "Watches",
    "controller_owner_key",
    "default_for_predicate",
    "is_resync",
]
