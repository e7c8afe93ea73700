"""Helpers for the leader-election tests: short timings, a fake clock, callback recorders, elector factory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shard_operator.leaderelection import LeaderElector
from shard_operator.testing.controlplane import ControlPlane

LEASE_NAME = "shard-operator-leader"
FAST = {"lease_duration": 2, "renew_deadline": 1.5, "retry_period": 0.2}


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorder:
    """Every callback of one elector, in order, with the monotonic time it ran."""

    events: list[tuple[float, str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {"on_started_leading": lambda: self._add("started", None),
                "on_stopped_leading": lambda: self._add("stopped", None),
                "on_new_leader": lambda identity: self._add("new_leader", identity),
                "on_status": lambda leading: self._add("status", leading)}

    def _add(self, kind: str, value: Any) -> None:
        with self._lock:
            self.events.append((time.monotonic(), kind, value))

    def kinds(self, *wanted: str) -> list[tuple[str, Any]]:
        with self._lock:
            return [(kind, value) for _, kind, value in self.events if not wanted or kind in wanted]

    def time_of(self, kind: str) -> float:
        with self._lock:
            return next(at for at, k, _ in self.events if k == kind)


class Electors:
    """Builds electors on the test's namespace, each with its own ApiClient; stops them all at the end."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self.control_plane = control_plane
        self.namespace = namespace
        self._made: list[tuple[LeaderElector, Any]] = []

    def make(self, identity: str, recorder: Recorder | None = None, **kwargs: Any) -> LeaderElector:
        api = self.control_plane.api_client()
        options: dict[str, Any] = {**FAST, **(recorder.callbacks() if recorder else {}), **kwargs}
        elector = LeaderElector(api, namespace=self.namespace, name=LEASE_NAME, identity=identity, **options)
        self._made.append((elector, api))
        return elector

    def api_of(self, elector: LeaderElector) -> Any:
        return next(api for made, api in self._made if made is elector)

    def close(self) -> None:
        for elector, api in self._made:
            elector.stop(timeout=10, release=False)
            api.close()


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
