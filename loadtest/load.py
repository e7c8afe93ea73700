"""The load generator: creates, updates and deletes objects at a given rate, and logs every change.

Where it sits: ``loadtest.runner`` calls it for each scenario phase; each create and spec update is
handed to ``Convergence`` (``loadtest.convergence``) with the generation the API server gave it, so its
create/update -> status latency can be measured. Requests that fail because a fault is on (API server
restarting, 429, connection reset) are retried with backoff until ``retry_for`` seconds have passed:
the generator itself must survive every fault the lab injects.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loadtest.convergence import Convergence
from shard_operator.client import Client
from shard_operator.errors import ConflictError, NotFoundError, TooManyRequestsError
from shard_operator.source import Resource

__all__ = ["Driver"]


class Driver:
    """Changes objects named ``<prefix>-<n>`` in one namespace; thread-safe."""

    def __init__(self, client: Client, resource: Resource, namespace: str, convergence: Convergence,
                 manifest: Callable[..., dict[str, Any]], *, retry_for: float = 120.0, threads: int = 8) -> None:
        self.client, self.resource, self.namespace = client, resource, namespace
        self.convergence, self.manifest, self.retry_for = convergence, manifest, retry_for
        self.live: set[str] = set()
        self.invalid: set[str] = set()
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._counter = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="load")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _retrying(self, verb: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.retry_for
        delay = 0.1
        while True:
            self.requests[verb] += 1
            try:
                return call()
            except (NotFoundError, ConflictError):
                raise
            except Exception as exc:
                self.failures[type(exc).__name__] += 1
                if time.monotonic() > deadline:
                    raise
                wait = exc.retry_after if isinstance(exc, TooManyRequestsError) and exc.retry_after else delay
                time.sleep(min(wait, 5.0))
                delay = min(delay * 2, 2.0)

    def key(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def create(self, name: str, **spec: Any) -> None:
        obj = self.manifest(name, self.namespace, **spec)
        try:
            created = self._retrying("create", lambda: self.client.create(self.resource, obj))
        except ConflictError:  # a retried create that had gone through
            created = self.client.get(self.resource, name, self.namespace)
        assert created is not None
        with self._lock:
            self.live.add(name)
            if spec.get("invalid"):
                self.invalid.add(self.key(name))
        self.convergence.changed(self.key(name), int(created["metadata"]["generation"]), "create")

    def update(self, name: str) -> None:
        with self._lock:
            self._counter += 1
            value = self._counter
        target = {"metadata": {"name": name, "namespace": self.namespace}}
        try:
            updated = self._retrying("update", lambda: self.client.patch(self.resource, target,
                                                                        {"spec": {"n": value}}))
        except NotFoundError:
            return
        assert updated is not None
        self.convergence.changed(self.key(name), int(updated["metadata"]["generation"]), "update")

    def delete(self, name: str) -> None:
        target = {"metadata": {"name": name, "namespace": self.namespace}}
        with self._lock:
            self.live.discard(name)
            self.invalid.discard(self.key(name))
        with contextlib.suppress(NotFoundError):
            self._retrying("delete", lambda: self.client.delete(self.resource, target, precondition=False))

    # -- phases ------------------------------------------------------------------------------

    def create_many(self, names: list[str], **spec: Any) -> None:
        """Create all at once (as fast as the pool goes): the burst scenario and the initial objects."""
        list(self._pool.map(lambda name: self.create(name, **spec), names))

    def delete_all(self) -> None:
        with self._lock:
            names = sorted(self.live)
        list(self._pool.map(self.delete, names))

    def paced(self, rate: float, duration: float, pick: Callable[[random.Random], Callable[[], None]],
              stop: threading.Event | None = None, seed: int = 1) -> int:
        """Submit ``rate`` operations per second for ``duration`` seconds; each is ``pick(rng)()``.
        Returns how many were submitted; waits for them to finish."""
        rng = random.Random(seed)
        started = time.monotonic()
        futures = []
        n = 0
        while True:
            due = started + n / rate
            now = time.monotonic()
            if due - started >= duration or (stop is not None and stop.is_set()):
                break
            if due > now:
                time.sleep(due - now)
            futures.append(self._pool.submit(pick(rng)))
            n += 1
        for future in futures:
            future.result()
        return n

    def random_update(self, rng: random.Random) -> Callable[[], None]:
        with self._lock:
            valid = sorted(name for name in self.live if self.key(name) not in self.invalid)
        name = rng.choice(valid) if valid else None
        return (lambda: self.update(name)) if name else (lambda: None)

    def churn_op(self, rng: random.Random, mix: tuple[float, float, float] = (0.3, 0.5, 0.2)) -> Callable[[], None]:
        """create / update / delete in proportion ``mix``."""
        roll = rng.random()
        if roll < mix[0] or not self.live:
            with self._lock:
                self._counter += 1
                name = f"c-{self._counter:06d}"
            return lambda: self.create(name)
        if roll < mix[0] + mix[1]:
            return self.random_update(rng)
        with self._lock:
            valid = sorted(name for name in self.live if self.key(name) not in self.invalid)
        victim = rng.choice(valid) if valid else None
        return (lambda: self.delete(victim)) if victim else (lambda: None)
