"""The lab's pure measurements: JSONPath convergence, histogram quantiles, recovery times, SLO gates."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loadtest.convergence import Change, Convergence, jsonpath
from loadtest.faults import FaultEvent, FaultSpec, invalid_burst, kill_worker, parse_fault, recovery_times
from loadtest.runner import Run, RunOptions
from loadtest.sampling import Sampler, histogram_quantile
from loadtest.slo import evaluate, load_slo

READY = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [
    {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True", "observedGeneration": 3}]}}


def test_jsonpath_reads_fields_indexes_and_filters() -> None:
    assert jsonpath(READY, "{.status.observedGeneration}") == 2
    assert jsonpath(READY, "{.status.conditions[1].type}") == "Ready"
    assert jsonpath(READY, '{.status.conditions[?(@.type=="Ready")].observedGeneration}') == 3
    assert jsonpath(READY, "{.status.missing.deeper}") is None
    with pytest.raises(ValueError, match="unsupported"):
        jsonpath(READY, "{$..x}")


def test_a_change_converges_when_the_watch_shows_its_generation_observed() -> None:
    convergence = Convergence('{.status.conditions[?(@.type=="Ready")].observedGeneration}')
    convergence.changed("ns/a", 3, "update", at=100.0)
    convergence.observed("ns/a", {"metadata": {"generation": 3}, "status": {}})
    assert convergence.outstanding() == 1
    convergence.observed("ns/a", READY)
    assert convergence.outstanding() == 0 and convergence.changes[0].converged_at is not None


def test_a_change_to_an_object_deleted_before_it_converged_is_not_outstanding() -> None:
    convergence = Convergence("{.status.observedGeneration}")
    convergence.changed("ns/a", 1, "create", at=1.0)
    convergence.observed("ns/a", None)
    assert convergence.outstanding() == 0 and convergence.changes[0].deleted


def test_a_fixed_converged_value_marks_the_current_generation_converged() -> None:
    convergence = Convergence('{.status.conditions[?(@.type=="Ready")].status}', converged_value="True")
    assert convergence.converged_generation(READY) == 3


def test_histogram_quantile_interpolates_within_the_bucket_of_the_observations_between_two_snapshots() -> None:
    before = {0.1: 10.0, 1.0: 10.0, float("inf"): 10.0}
    after = {0.1: 10.0, 1.0: 110.0, float("inf"): 110.0}  # 100 new observations, all in (0.1, 1]
    assert histogram_quantile(before, after, 0.5) == pytest.approx(0.55)
    assert histogram_quantile(after, after, 0.99) is None


def test_recovery_is_the_longest_wait_past_the_faults_end() -> None:
    changes = [Change("ns/a", 1, 9.0, "update", converged_at=14.0),   # stuck through the fault
               Change("ns/b", 1, 12.0, "update", converged_at=12.1),  # made after: waited 0.1 s
               Change("ns/c", 1, 30.0, "update", converged_at=30.1)]  # long after: not affected
    event = FaultEvent("kill-worker", 10.0, 10.0)
    recovery_times([event], changes, ignore=set())
    assert event.recovery_s == 4.0 and event.extra["worst_latency_s"] == 5.0


def test_a_fault_after_which_a_change_never_converged_has_no_recovery_time() -> None:
    event = FaultEvent("redis-lose-data", 10.0, 11.0)
    recovery_times([event], [Change("ns/a", 1, 9.0, "update")], ignore=set())
    assert event.recovery_s is None


def test_slo_gates_break_on_an_overlap_and_on_an_unrecovered_fault(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("overlaps: 0\nlatency_p99_s: 5\nrecovery_s: 30\nqueue_latency_p99_s: 1\n")
    results = {"checker": {"recorded": True, "overlaps": [{"key": "ns/a"}], "lost": []},
               "latency": {"p99_s": 1.5}, "queue": {"latency_p99_s": None},
               "faults": [{"name": "kill-leader", "offset_s": 12.0, "recovery_s": None}]}
    gates = {g["gate"]: g["status"] for g in evaluate(results, load_slo(path))}
    assert gates == {"overlaps": "broken", "latency_p99_s": "ok", "recovery_s[kill-leader@12.0]": "broken",
                     "queue_latency_p99_s": "unmeasured"}


def test_a_throttle_lasts_the_whole_run_so_its_recovery_is_the_time_to_absorb_the_load_made_under_it() -> None:
    changes = [Change("ns/before", 1, 1.0, "create", converged_at=1.1),   # made before it: not its business
               Change("ns/a", 1, 10.5, "create", converged_at=12.0),
               Change("ns/b", 1, 14.0, "create", converged_at=37.0),     # last to converge, 27 s after the start
               Change("ns/c", 1, 20.0, "update", converged_at=20.2)]     # quick, but under it too
    event = FaultEvent("throttle", 10.0, 10.0)
    recovery_times([event], changes, ignore=set())
    assert event.recovery_s == 27.0 and event.extra["worst_latency_s"] == 23.0


def test_an_invalid_burst_is_followed_by_valid_canaries_whose_wait_is_its_recovery() -> None:
    created: list[tuple[list[str], dict[str, Any]]] = []
    run = SimpleNamespace(driver=SimpleNamespace(create_many=lambda names, **spec: created.append((names, spec))))
    event = invalid_burst(run, FaultSpec("invalid-burst", 20.0), random.Random(1))  # type: ignore[arg-type]
    assert [(len(names), spec) for names, spec in created] == [(20, {"invalid": True}), (2, {})]
    assert created[1][0] == ["after-invalid-0000", "after-invalid-0001"] and event.extra["canaries"] == 2
    event.start, event.end = 10.0, 11.0
    invalid = {f"ns/{name}" for name in created[0][0]}
    changes = [Change(key, 1, 10.5, "create") for key in sorted(invalid)]  # never converge, and need not
    changes += [Change("ns/after-invalid-0000", 1, 11.1, "create", converged_at=12.5),
                Change("ns/after-invalid-0001", 1, 11.2, "create", converged_at=11.4)]
    recovery_times([event], changes, ignore=invalid)
    assert event.recovery_s == 1.4  # the slower canary, from its making (after the burst ended)


@pytest.mark.parametrize(("options", "lease"), [
    (RunOptions(), "loadobjects-leader"),                                      # the sample workload's
    (RunOptions(operator_cmd="op", lease_name="widgets-leader"), "widgets-leader"),  # a black box, told
    (RunOptions(operator_cmd="op"), None),                                     # a black box, not told
])
def test_the_leader_is_read_from_the_lease_the_run_was_given(options: RunOptions, lease: str | None) -> None:
    asked: list[str] = []

    def get(resource: object, name: str, namespace: str) -> dict[str, Any]:
        asked.append(f"{namespace}/{name}")
        return {"spec": {"holderIdentity": "lab-0"}}

    run = SimpleNamespace(options=options, namespace="lt-1", client=SimpleNamespace(get=get))
    assert Run.leader(run) == ("lab-0" if lease else None)  # type: ignore[arg-type]
    assert asked == ([f"lt-1/{lease}"] if lease else [])


def _recovery_gates(events: list[FaultEvent]) -> list[dict[str, Any]]:
    changes = [Change("ns/a", 1, 9.0, "update", converged_at=9.5)]  # everything converged at once
    recovery_times(events, changes, ignore=set())
    results = {"faults": [{**e.to_dict(), "offset_s": e.start} for e in events]}
    return evaluate(results, {"recovery_s": 60.0})


def test_a_fault_with_no_worker_to_kill_was_not_injected_and_breaks_the_recovery_gate() -> None:
    event = kill_worker(SimpleNamespace(pods=[]), FaultSpec("kill-worker"), random.Random(1))  # type: ignore[arg-type]
    assert event.injected is False
    [gate] = _recovery_gates([event])
    assert gate["status"] == "broken" and gate["reason"] == "not injected: no worker to kill"
    assert event.recovery_s is None


def test_a_fault_whose_injection_raised_was_not_injected_and_breaks_the_recovery_gate() -> None:
    run = SimpleNamespace(options=SimpleNamespace(faults=[FaultSpec("kill-leader")]), events=[],
                          rng=random.Random(1), pods=[])  # no leader() to ask: the injection raises
    Run.fault_thread(run, 0.1).join(5)  # type: ignore[arg-type]
    [event] = run.events
    assert not event.injected and event.detail.startswith("injection failed: AttributeError")
    assert [g["status"] for g in _recovery_gates([event])] == ["broken"]


def test_an_injected_fault_that_recovered_in_time_passes_the_recovery_gate() -> None:
    [gate] = _recovery_gates([FaultEvent("kill-worker", 9.2, 9.2, "SIGKILL worker 7 of lab-0")])
    assert gate["status"] == "ok" and gate["value"] == 0.3 and "reason" not in gate


def test_an_unknown_slo_key_or_fault_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("overlap: 0\n")
    with pytest.raises(ValueError, match="unknown SLO keys"):
        load_slo(path)
    with pytest.raises(ValueError, match="unknown fault"):
        parse_fault("kill-everything")
    assert parse_fault("kill-worker:7").arg == 7.0


def test_peak_rss_is_kept_for_every_worker_process_apart() -> None:
    workers = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]  # children of this "manager"
    try:
        pod = SimpleNamespace(name="lab-0", pid=os.getpid(), metrics_port=None)
        sampler = Sampler([pod], redis_client=None)  # type: ignore[list-item]
        sampler.sample()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    peaks = sampler.rss_peak_by_process
    assert peaks[f"lab-0/manager/{os.getpid()}"] > 10
    assert all(peaks[f"lab-0/worker/{w.pid}"] > 0 for w in workers)
    # the role's peak is the largest of its processes (this test process may have other children, such as
    # the servers other tests' session fixtures started: they count as workers of the "manager" here)
    assert sampler.rss_peak_by_role["lab-0/worker"] == max(
        peak for name, peak in peaks.items() if name.startswith("lab-0/worker/"))
