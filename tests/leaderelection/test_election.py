"""Leader election against the real API server, with a 2 s lease, 1.5 s renew deadline and 0.2 s retry."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.leaderelection.helpers import FAST, LEASE_NAME, Electors, Recorder, wait_for

pytestmark = pytest.mark.controlplane

LEASE = FAST["lease_duration"]
RETRY = FAST["retry_period"]


def _spec(leases: Any, namespace: str) -> Any:
    return leases.read_namespaced_lease(LEASE_NAME, namespace).spec


def test_a_single_candidate_becomes_leader_and_the_lease_names_it(
        electors: Electors, leases: Any) -> None:
    recorder = Recorder()
    elector = electors.make("pod-a", recorder).start()

    assert wait_for(lambda: elector.is_leader, 3)
    spec = _spec(leases, electors.namespace)
    assert spec.holder_identity == "pod-a"
    assert spec.lease_duration_seconds == LEASE
    assert spec.lease_transitions == 0
    assert recorder.kinds() == [("status", False), ("new_leader", "pod-a"), ("status", True), ("started", None)]

    first_renewal = spec.renew_time
    assert wait_for(lambda: _spec(leases, electors.namespace).renew_time > first_renewal, 2)
    assert _spec(leases, electors.namespace).acquire_time == spec.acquire_time


def test_two_candidates_are_never_leaders_at_the_same_time(electors: Electors) -> None:
    a, b = electors.make("pod-a").start(), electors.make("pod-b").start()
    assert wait_for(lambda: a.is_leader or b.is_leader, 3)

    deadline = time.monotonic() + 3
    samples = 0
    while time.monotonic() < deadline:
        assert a.is_leader + b.is_leader == 1
        samples += 1
        time.sleep(0.005)
    assert samples > 100
    assert a.leader == b.leader in ("pod-a", "pod-b")


def test_when_the_leader_stops_without_release_the_other_takes_over_once_the_lease_expires_and_not_before(
        electors: Electors, leases: Any) -> None:
    first, second = Recorder(), Recorder()
    a = electors.make("pod-a", first).start()
    assert wait_for(lambda: a.is_leader, 3)
    b = electors.make("pod-b", second).start()
    assert wait_for(lambda: b.leader == "pod-a", 2)
    time.sleep(0.5)  # b has seen a renew
    assert not b.is_leader

    a.stop(release=False)
    stopped_at = time.monotonic()
    assert ("stopped", None) in first.kinds()
    assert wait_for(lambda: b.is_leader, LEASE + 2)
    took_over_after = second.time_of("started") - stopped_at

    # a's last renewal was at most one retry period before it stopped; b waits a full lease on its own clock
    assert LEASE - RETRY - 0.1 <= took_over_after <= LEASE + 1.5
    spec = _spec(leases, electors.namespace)
    assert (spec.holder_identity, spec.lease_transitions) == ("pod-b", 1)
    assert second.kinds("new_leader") == [("new_leader", "pod-a"), ("new_leader", "pod-b")]


def test_after_release_the_other_candidate_takes_over_within_a_retry_period(
        electors: Electors, leases: Any) -> None:
    first, second = Recorder(), Recorder()
    a = electors.make("pod-a", first).start()
    assert wait_for(lambda: a.is_leader, 3)
    b = electors.make("pod-b", second).start()
    assert wait_for(lambda: b.leader == "pod-a", 2)

    assert a.release(timeout=5)
    released_at = time.monotonic()
    assert not a.is_leader
    assert first.kinds()[-2:] == [("stopped", None), ("status", False)]  # informers stop before hand-over

    assert wait_for(lambda: b.is_leader, 1.5)
    assert second.time_of("started") - released_at < 1.0
    spec = _spec(leases, electors.namespace)
    assert (spec.holder_identity, spec.lease_duration_seconds, spec.lease_transitions) == ("pod-b", LEASE, 1)


def test_a_released_lease_names_no_holder_and_lasts_one_second(electors: Electors, leases: Any) -> None:
    a = electors.make("pod-a").start()
    assert wait_for(lambda: a.is_leader, 3)
    assert a.release(timeout=5)
    spec = _spec(leases, electors.namespace)
    assert (spec.holder_identity or "", spec.lease_duration_seconds, spec.lease_transitions) == ("", 1, 0)


def test_a_leader_whose_api_calls_fail_stops_leading_within_the_renew_deadline_then_campaigns_again(
        electors: Electors) -> None:
    recorder = Recorder()
    a = electors.make("pod-a", recorder).start()
    assert wait_for(lambda: a.is_leader, 3)

    electors.api_of(a).configuration.host = "https://127.0.0.1:1"  # nothing listens: every call fails
    broken_at = time.monotonic()
    assert wait_for(lambda: not a.is_leader, FAST["renew_deadline"] + 1)
    assert recorder.time_of("stopped") - broken_at <= FAST["renew_deadline"] + 0.3
    assert recorder.kinds()[-2:] == [("stopped", None), ("status", False)]

    time.sleep(0.5)
    assert not a.is_leader  # back to candidate, and still unable to reach the server

    electors.api_of(a).configuration.host = electors.control_plane.server_url
    assert wait_for(lambda: a.is_leader, 2)  # the Lease still names it: it takes it back at once
    assert recorder.kinds("started", "stopped") == [("started", None), ("stopped", None), ("started", None)]


def test_a_leader_whose_lease_is_stolen_stops_leading_at_its_next_renewal(
        electors: Electors, leases: Any) -> None:
    recorder = Recorder()
    a = electors.make("pod-a", recorder).start()
    assert wait_for(lambda: a.is_leader, 3)

    lease = leases.read_namespaced_lease(LEASE_NAME, electors.namespace)
    lease.spec.holder_identity = "thief"
    lease.spec.renew_time = datetime.now(UTC).replace(microsecond=1)  # MicroTime needs them
    lease.spec.lease_duration_seconds = 60
    leases.replace_namespaced_lease(LEASE_NAME, electors.namespace, lease)
    stolen_at = time.monotonic()

    assert wait_for(lambda: not a.is_leader, 1)
    assert recorder.time_of("stopped") - stolen_at <= RETRY + 0.3
    assert ("new_leader", "thief") in recorder.kinds()
    time.sleep(0.5)
    assert not a.is_leader
    assert _spec(leases, electors.namespace).holder_identity == "thief"  # the loser did not overwrite it
