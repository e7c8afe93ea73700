"""List+watch informers: the leader's view of the API server, fed to the shared cache and handlers."""

from shard_operator.source.backoff import Backoff
from shard_operator.source.event import (
    FINGERPRINT_FIELDS,
    Event,
    EventType,
    Handler,
    Transform,
    drop_managed_fields,
    fingerprint,
)
from shard_operator.source.hashrange import FULL_RANGE, HASH_SPACE, HashRange, uid_hash
from shard_operator.source.informer import Informer
from shard_operator.source.reflector import BatchHandler, ListHook, Reflector, StreamingListHook
from shard_operator.source.resource import ApiListWatch, ListPage, ListWatch, Resource, object_key

__all__ = [
    "FINGERPRINT_FIELDS",
    "FULL_RANGE",
    "HASH_SPACE",
    "ApiListWatch",
    "Backoff",
    "BatchHandler",
    "Event",
    "EventType",
    "Handler",
    "HashRange",
    "Informer",
    "ListHook",
    "ListPage",
    "ListWatch",
    "Reflector",
    "Resource",
    "StreamingListHook",
    "Transform",
    "drop_managed_fields",
    "fingerprint",
    "object_key",
    "uid_hash",
]
