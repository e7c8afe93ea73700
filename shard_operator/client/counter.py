"""Counting the API requests a process makes, by verb and resource.

The shared cache exists so that a reconcile reads without calling the API server (docs/design.md §2.2); this
counter is how that promise is checked. Every request made through :class:`~shard_operator.client.Client`
(and the :class:`~shard_operator.client.EventRecorder` built on it) is recorded here before it is sent,
whether it then succeeds or fails, so a test can assert that a worker in steady state made no
``get`` or ``list`` call. Counts live in the process that made the requests.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["RequestCounter", "Verb"]

Verb = str
"""A Kubernetes API verb as RBAC spells it: ``get``, ``list``, ``create``, ``patch``, ``delete``, …"""


class RequestCounter:
    """Thread-safe request counts: ``counts[(verb, resource)]`` is 0 for pairs never seen.

    ``resource`` is :attr:`shard_operator.source.Resource.name`, with ``/status`` appended for the
    status subresource (``widgets.v1.example.com/status``); core Events count as ``events.v1``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[Verb, str]] = Counter()

    def record(self, verb: Verb, resource: str) -> None:
        """Count one request."""
        with self._lock:
            self._counts[(verb, resource)] += 1

    @property
    def counts(self) -> Counter[tuple[Verb, str]]:
        """A snapshot of the counts (a copy: later requests do not change it)."""
        with self._lock:
            return Counter(self._counts)

    def total(self, verb: Verb | None = None, resource: str | None = None) -> int:
        """Requests with ``verb`` (any when None) on ``resource`` (any when None)."""
        with self._lock:
            return sum(count for (v, r), count in self._counts.items()
                       if (verb is None or v == verb) and (resource is None or r == resource))

    def reset(self) -> None:
        """Forget every count (e.g. after a warm-up phase a test does not want to measure)."""
        with self._lock:
            self._counts.clear()

    def __repr__(self) -> str:
        return f"RequestCounter({dict(self.counts)!r})"
