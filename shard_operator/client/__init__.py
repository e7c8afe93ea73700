"""The reconcilers' API helpers: counted, fenced, concurrency-safe writes, conditions, owners and events."""

from shard_operator.client.api import JSON_PATCH, MERGE_PATCH, Client, conditional_patch
from shard_operator.client.conditions import (
    CONDITION_STATUSES,
    find_condition,
    generation,
    is_condition_true,
    is_observed,
    observed_generation,
    remove_condition,
    set_condition,
)
from shard_operator.client.counter import RequestCounter, Verb
from shard_operator.client.crds import install_crd, open_crd
from shard_operator.client.events import EVENTS, NORMAL, WARNING, EventRecorder
from shard_operator.client.fencing import FencedClient
from shard_operator.client.owners import (
    AlreadyOwnedError,
    controller_reference,
    owner_reference,
    set_controller_reference,
)

__all__ = [
    "CONDITION_STATUSES",
    "EVENTS",
    "JSON_PATCH",
    "MERGE_PATCH",
    "NORMAL",
    "WARNING",
    "AlreadyOwnedError",
    "Client",
    "EventRecorder",
    "FencedClient",
    "RequestCounter",
    "Verb",
    "conditional_patch",
    "controller_reference",
    "find_condition",
    "generation",
    "install_crd",
    "is_condition_true",
    "is_observed",
    "observed_generation",
    "open_crd",
    "owner_reference",
    "remove_condition",
    "set_condition",
    "set_controller_reference",
]
