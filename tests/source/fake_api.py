"""An in-memory stand-in for the API server's list and watch, with faults on demand."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from typing import Any

from shard_operator.errors import GoneError
from shard_operator.source import ListPage, object_key


class FakeListWatch:
    """Objects with resourceVersions, an event history that can be compacted, and queued failures.

    ``list_failures`` / ``watch_failures`` are exceptions raised by the next calls, in order; a
    ``dict`` in ``watch_failures`` is sent as an ``ERROR`` event instead.
    """

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.version = 100
        self.compacted = 0
        self.list_failures: list[Exception] = []
        self.watch_failures: list[Exception | dict[str, Any]] = []
        self.calls: list[tuple[str, str | None, Any, float]] = []
        self._cond = threading.Condition()
        self._generation = 0

    # -- mutations, as a client of the API server would make them ---------------------

    def put(self, name: str, namespace: str | None = "ns1", **fields: Any) -> dict[str, Any]:
        with self._cond:
            self.version += 1
            meta = {"name": name, "resourceVersion": str(self.version),
                    "managedFields": [{"manager": "test"}], **fields.pop("metadata", {})}
            if namespace:
                meta["namespace"] = namespace
            obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, **fields}
            key = object_key(obj)
            kind = "MODIFIED" if key in self.objects else "ADDED"
            self.objects[key] = obj
            self.history.append((self.version, kind, copy.deepcopy(obj)))
            self._cond.notify_all()
            return obj

    def remove(self, key: str) -> None:
        with self._cond:
            self.version += 1
            obj = self.objects.pop(key)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.history.append((self.version, "DELETED", copy.deepcopy(obj)))
            self._cond.notify_all()

    def compact(self) -> None:
        with self._cond:
            self.compacted = self.version
            self.history.clear()

    # -- the ListWatch protocol -----------------------------------------------------------

    def list(self, namespace: str | None, *, limit: int, continue_token: str | None) -> ListPage:
        self.calls.append(("list", namespace, continue_token, time.monotonic()))
        if self.list_failures:
            raise self.list_failures.pop(0)
        with self._cond:
            keys = sorted(k for k in self.objects if _in(namespace, self.objects[k]))
            start = int(continue_token or 0)
            page = keys[start:start + limit]
            more = str(start + limit) if start + limit < len(keys) else None
            return ListPage([copy.deepcopy(self.objects[k]) for k in page], str(self.version), more)

    def watch(self, namespace: str | None, *, resource_version: str,
              timeout_seconds: int) -> Iterator[dict[str, Any]]:
        self.calls.append(("watch", namespace, resource_version, time.monotonic()))
        if self.watch_failures:
            failure = self.watch_failures.pop(0)
            if isinstance(failure, dict):
                yield {"type": "ERROR", "object": failure}
                return
            raise failure
        since = int(resource_version)
        if since < self.compacted:
            raise GoneError("too old resource version", status=410, reason="Expired")
        generation = self._generation
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with self._cond:
                if self._generation != generation:
                    return
                pending = [(v, t, o) for v, t, o in self.history if v > since and _in(namespace, o)]
                if not pending:
                    self._cond.wait(0.05)
                    continue
            for version, kind, obj in pending:
                since = version
                yield {"type": kind, "object": copy.deepcopy(obj)}
        yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(self.version)}}}

    def interrupt(self) -> None:
        with self._cond:
            self._generation += 1  # ends the watches open now, not later ones
            self._cond.notify_all()


def _in(namespace: str | None, obj: dict[str, Any]) -> bool:
    return namespace is None or obj["metadata"].get("namespace") == namespace
