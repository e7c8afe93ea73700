"""When a candidate may take a Lease: single attempts against the real API server, stepped by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shard_operator.errors import NotFoundError
from shard_operator.leaderelection import LeaderElectionRecord, LeaderElector, LeaseLock
from tests.leaderelection.helpers import FAST, LEASE_NAME, Electors, FakeClock

pytestmark = pytest.mark.controlplane

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def _write(leases: Any, namespace: str, record: LeaderElectionRecord) -> None:
    """Another writer sets the Lease to ``record`` (created if absent)."""
    lock = LeaseLock(leases.api_client, namespace, LEASE_NAME)
    try:
        lock.get(timeout=5)
    except NotFoundError:
        lock.create(record, timeout=5)
    else:
        lock.update(record, timeout=5)


def _holder(leases: Any, namespace: str) -> tuple[str, int]:
    spec = leases.read_namespaced_lease(LEASE_NAME, namespace).spec
    return spec.holder_identity or "", spec.lease_transitions


def _candidate(electors: Electors, identity: str, clock: FakeClock) -> LeaderElector:
    return electors.make(identity, clock=clock)


def test_a_candidate_ignores_the_remote_renew_time_and_waits_a_full_lease_on_its_own_clock(
        electors: Electors, leases: Any) -> None:
    _write(leases, electors.namespace, LeaderElectionRecord("other", 2, LONG_AGO, LONG_AGO, 3))
    clock = FakeClock()
    b = _candidate(electors, "pod-b", clock)

    assert not b.try_acquire_or_renew()  # first sight starts the countdown, however old renewTime is
    clock.advance(FAST["lease_duration"] - 0.1)
    assert not b.try_acquire_or_renew()
    clock.advance(0.2)
    assert b.try_acquire_or_renew()
    assert _holder(leases, electors.namespace) == ("pod-b", 4)


def test_every_change_to_the_record_restarts_the_candidates_countdown(electors: Electors, leases: Any) -> None:
    _write(leases, electors.namespace, LeaderElectionRecord("other", 2, LONG_AGO, LONG_AGO, 0))
    clock = FakeClock()
    b = _candidate(electors, "pod-b", clock)
    assert not b.try_acquire_or_renew()

    clock.advance(1.5)
    renewed = datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)  # a renewal, still by a clock far behind ours
    _write(leases, electors.namespace, LeaderElectionRecord("other", 2, LONG_AGO, renewed, 0))
    assert not b.try_acquire_or_renew()
    clock.advance(1.9)
    assert not b.try_acquire_or_renew()
    clock.advance(0.2)
    assert b.try_acquire_or_renew()


def test_a_candidate_that_already_holds_the_lease_renews_it_at_once(electors: Electors, leases: Any) -> None:
    _write(leases, electors.namespace, LeaderElectionRecord("pod-b", 2, LONG_AGO, LONG_AGO, 5))
    b = _candidate(electors, "pod-b", FakeClock())

    assert b.try_acquire_or_renew()
    spec = leases.read_namespaced_lease(LEASE_NAME, electors.namespace).spec
    assert (spec.holder_identity, spec.lease_transitions, spec.acquire_time) == ("pod-b", 5, LONG_AGO)
    assert spec.renew_time > LONG_AGO


def test_a_lease_with_no_holder_is_taken_at_once(electors: Electors, leases: Any) -> None:
    _write(leases, electors.namespace, LeaderElectionRecord("", 1, LONG_AGO, LONG_AGO, 2))
    b = _candidate(electors, "pod-b", FakeClock())

    assert b.try_acquire_or_renew()
    assert _holder(leases, electors.namespace) == ("pod-b", 3)


def test_the_first_candidate_creates_the_lease(electors: Electors, leases: Any) -> None:
    a = _candidate(electors, "pod-a", FakeClock())
    assert a.try_acquire_or_renew()
    assert a.leader == "pod-a"
    assert _holder(leases, electors.namespace) == ("pod-a", 0)


def test_losing_the_write_race_is_a_failed_attempt_and_the_winner_keeps_the_lease(
        electors: Electors, leases: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(leases, electors.namespace, LeaderElectionRecord("", 1, LONG_AGO, LONG_AGO, 0))
    a, b = _candidate(electors, "pod-a", FakeClock()), _candidate(electors, "pod-b", FakeClock())
    read = b._lock.get

    def read_then_lose_the_race(timeout: float) -> LeaderElectionRecord:
        record = read(timeout)
        assert a.try_acquire_or_renew()  # a writes between b's read and b's write
        return record

    monkeypatch.setattr(b._lock, "get", read_then_lose_the_race)
    assert not b.try_acquire_or_renew()  # 409: no exception, no leadership
    assert _holder(leases, electors.namespace) == ("pod-a", 1)


def test_release_without_the_background_thread_hands_over_a_lease_taken_by_single_attempts(
        electors: Electors, leases: Any) -> None:
    a = _candidate(electors, "pod-a", FakeClock())
    assert a.try_acquire_or_renew()
    assert a.release()
    spec = leases.read_namespaced_lease(LEASE_NAME, electors.namespace).spec
    assert (spec.holder_identity or "", spec.lease_duration_seconds) == ("", 1)
    assert _candidate(electors, "pod-b", FakeClock()).try_acquire_or_renew()
