"""Kubernetes Events from reconcilers: what ``kubectl describe`` shows about an object.

A reconciler records why it did something (``Created``, ``ScaledUp``) or why it could not
(``InvalidSpec``) as a core/v1 Event on the object it reconciles. Events are for humans, never
part of correctness: :class:`EventRecorder` is best effort, so a failure to record (the API server
is slow, RBAC forbids events, the namespace is being deleted) is logged and swallowed, and it never
fails a reconcile. Requests go through :class:`~shard_operator.client.Client`, so they are counted
(as ``create`` on ``events.v1``). The one exception that passes through is
:class:`~shard_operator.errors.ClaimLost`: a reconcile's recorder (:meth:`EventRecorder.bound` to its
fenced client) records nothing once the worker lost its claim, and the reconcile is aborted.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shard_operator.errors import ClaimLost
from shard_operator.source.resource import Resource

if TYPE_CHECKING:
    from shard_operator.client.api import Client
    from shard_operator.client.fencing import FencedClient

__all__ = ["EVENTS", "NORMAL", "WARNING", "EventRecorder"]

NORMAL = "Normal"
WARNING = "Warning"
EVENTS = Resource("", "v1", "events")
_MAX_MESSAGE = 1024  # what the API server keeps of an event's message, as client-go truncates it

log = logging.getLogger(__name__)


class EventRecorder:
    """Creates core/v1 Events about objects, as ``component`` (e.g. the operator's name).

    Contract: :meth:`record` returns the created Event, or None when it could not be created; it
    never raises for API or transport errors (it does raise ``ClaimLost`` from a fenced client). Events of
    cluster-scoped objects go to ``default``.
    """

    __slots__ = ("client", "component", "instance")

    def __init__(self, client: Client | FencedClient, component: str, *, instance: str | None = None) -> None:
        self.client = client
        self.component = component
        self.instance = instance or socket.gethostname()

    def bound(self, client: Client | FencedClient) -> EventRecorder:
        """This recorder writing through ``client`` (a reconcile's fenced client); cheap, nothing is copied."""
        other = EventRecorder.__new__(EventRecorder)
        other.client, other.component, other.instance = client, self.component, self.instance
        return other

    def normal(self, obj: dict[str, Any], reason: str, message: str) -> dict[str, Any] | None:
        """Record a Normal event: something happened as expected."""
        return self.record(obj, NORMAL, reason, message)

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> dict[str, Any] | None:
        """Record a Warning event: something went wrong, or needs a human."""
        return self.record(obj, WARNING, reason, message)

    def record(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> dict[str, Any] | None:
        """Create one Event about ``obj`` (``event_type`` is ``Normal`` or ``Warning``)."""
        try:
            event = self._event(obj, event_type, reason, message)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("not recording event %s on an invalid object or type: %s", reason, exc)
            return None
        try:
            return self.client.create(EVENTS, event)
        except ClaimLost:
            raise
        except Exception:
            log.warning("could not record event %s %s on %s/%s", event_type, reason,
                        event["involvedObject"].get("namespace", ""), event["involvedObject"]["name"],
                        exc_info=True)
            return None

    def _event(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> dict[str, Any]:
        if event_type not in (NORMAL, WARNING):
            raise ValueError(f"event type must be {NORMAL!r} or {WARNING!r}, not {event_type!r}")
        meta = obj["metadata"]
        involved = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                    "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion")}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "apiVersion": "v1",
            "kind": "Event",
            # client-go's naming: unique per event, and sorted by time under the object's name.
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}",
                         "namespace": meta.get("namespace") or "default"},
            "involvedObject": {key: value for key, value in involved.items() if value},
            "type": event_type,
            "reason": reason,
            "message": message[:_MAX_MESSAGE],
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
