"""A leader whose renewals are answered with 429 keeps its Lease while a renewal still succeeds
within the renew deadline: it retries after Retry-After (not after retry_period), writes on the
version it holds (no extra GET), and never sleeps past its deadline."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from shard_operator.errors import NotFoundError, TooManyRequestsError
from shard_operator.leaderelection import LeaderElector
from tests.waiting import eventually


class ThrottledLeaseApi:
    """One Lease in memory; while ``throttled_until`` (monotonic) is ahead, every call gets a 429."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.throttled_until = 0.0
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.calls: list[tuple[float, str, bool]] = []  # (time, method, answered)
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if now < self.throttled_until:
                self.calls.append((now, method, False))
                raise TooManyRequestsError("too many requests", retry_after=self.retry_after)
            self.calls.append((now, method, True))
            if method == "GET":
                if self.lease is None:
                    raise NotFoundError("not found", status=404)
                return dict(self.lease)
            assert body is not None
            self.version += 1
            self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
            return dict(self.lease)

    def renewals(self) -> list[float]:
        with self._lock:
            return [at for at, method, answered in self.calls if method == "PUT" and answered]


def elector_on(api: ThrottledLeaseApi, events: list[str]) -> LeaderElector:
    elector = LeaderElector(None, namespace="default", name="lease", identity="a",  # type: ignore[arg-type]
                            lease_duration=4, renew_deadline=3.0, retry_period=2.0,
                            on_started_leading=lambda: events.append("started"),
                            on_stopped_leading=lambda: events.append("stopped"))
    elector._lock._request = api.request  # type: ignore[method-assign]
    return elector


def test_a_leader_throttled_until_shortly_before_its_deadline_keeps_the_lease():
    api, events = ThrottledLeaseApi(retry_after=0.2), []
    elector = elector_on(api, events).start()
    try:
        eventually(lambda: len(api.renewals()) >= 1, timeout=10)  # the first renewal, ~2 s after leading
        renewed = api.renewals()[0]
        # Every call fails from just after that renewal until 0.6 s before its deadline (renewed + 3 s):
        # the regular retry at renewed + 2 s fails, and retry_period (2 s) would go past the deadline.
        api.throttled_until = renewed + 2.4
        eventually(lambda: any(at > api.throttled_until for at in api.renewals()), timeout=10)
        assert events == ["started"] and elector.is_leader
        with api._lock:
            throttled = [(at, method) for at, method, answered in api.calls if not answered]
        assert throttled and all(method == "PUT" for _, method in throttled)  # no extra GET per attempt
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(throttled)]
        assert all(gap >= 0.19 for gap in gaps)  # Retry-After is honoured
    finally:
        elector.stop(timeout=5, release=False)


def test_retry_waits_honour_retry_after_but_never_pass_the_deadline():
    elector = elector_on(ThrottledLeaseApi(retry_after=1.0), [])
    assert elector.retry_wait(2.5, 1.0) == 1.0
    assert elector.retry_wait(2.5, None) == 2.0  # retry_period without a Retry-After
    assert elector.retry_wait(0.8, 5.0) == pytest.approx(0.6)  # a last try 0.2 s before the deadline
    assert 0 < elector.retry_wait(0.1, 5.0) < 0.1
