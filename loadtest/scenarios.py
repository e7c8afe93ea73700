"""The scenarios: what load a run puts on the operator, phase by phase.

Where it sits: ``loadtest.cli`` picks one by name and hands it a started :class:`~loadtest.runner.Run`;
each returns the scenario's own figures (convergence times, capacity) for the results.

- ``steady``: N objects, converge; then U updates/s for D seconds (faults during those D seconds);
  converge; delete all.
- ``burst``: N creates at once (faults across the next D seconds); converge; delete all.
- ``churn``: creates, updates and deletes (30/50/20) at U/s for D seconds, on N initial objects.
- ``stress``: N objects, then updates at a rate raised by half every D seconds (from U) until the p99
  queue latency of a step passes 1 s or its p99 change -> status latency passes 5 s; the capacity is
  the last rate that passed, in changes/s (``capacity_changes_per_s``, ``capacity_reached: true``).
  When no step broke the SLO within ``--max-steps`` the capacity was not reached: ``capacity_reached``
  is false, ``capacity_changes_per_s`` is None and ``capacity_at_least_changes_per_s`` is the last
  rate, a lower bound.
- ``scale`` lives in ``loadtest.cli`` (it needs a fresh set of pods per configuration).
"""

from __future__ import annotations

import time
from typing import Any

from loadtest.convergence import percentile
from loadtest.runner import Run
from loadtest.sampling import buckets, histogram_quantile

__all__ = ["SCENARIOS"]


def _create_initial(run: Run) -> float | None:
    run.set_phase("create")
    run.driver.create_many([f"obj-{i:05d}" for i in range(run.options.objects)])
    run.set_phase("converge")
    return run.wait_converged()


def _finish(run: Run, figures: dict[str, Any]) -> dict[str, Any]:
    run.set_phase("converge")
    figures["final_convergence_s"] = run.wait_converged()
    figures["finals"] = run.finals()
    run.set_phase("delete")
    started = time.time()
    run.driver.delete_all()
    figures["all_deleted"] = run.wait_gone()
    figures["delete_s"] = round(time.time() - started, 2)
    run.set_phase("done")
    return figures


def steady(run: Run) -> dict[str, Any]:
    figures: dict[str, Any] = {"initial_convergence_s": _create_initial(run)}
    run.set_phase("updates")
    faults = run.fault_thread(run.options.duration)
    figures["updates"] = run.driver.paced(run.options.rate, run.options.duration, run.driver.random_update)
    faults.join()
    return _finish(run, figures)


def burst(run: Run) -> dict[str, Any]:
    run.set_phase("burst")
    faults = run.fault_thread(run.options.duration)
    started = time.time()
    run.driver.create_many([f"obj-{i:05d}" for i in range(run.options.objects)])
    figures: dict[str, Any] = {"create_s": round(time.time() - started, 2)}
    run.set_phase("converge")
    converged = run.wait_converged()
    figures["burst_convergence_s"] = None if converged is None else round(time.time() - started, 2)
    figures["objects_per_s"] = (round(run.options.objects / figures["burst_convergence_s"], 1)
                                if figures["burst_convergence_s"] else None)
    faults.join()
    return _finish(run, figures)


def churn(run: Run) -> dict[str, Any]:
    figures: dict[str, Any] = {"initial_convergence_s": _create_initial(run)}
    run.set_phase("churn")
    faults = run.fault_thread(run.options.duration)
    figures["operations"] = run.driver.paced(run.options.rate, run.options.duration, run.driver.churn_op)
    faults.join()
    return _finish(run, figures)


def stress(run: Run, queue_slo_s: float = 1.0, latency_slo_s: float = 5.0, factor: float = 1.5,
           max_steps: int = 12) -> dict[str, Any]:
    figures: dict[str, Any] = {"initial_convergence_s": _create_initial(run), "steps": []}
    rate, capacity, reached = run.options.rate, None, False
    for _ in range(max_steps):
        run.set_phase(f"stress {rate:.0f}/s")
        before = run.sampler.scrape()
        started = time.time()
        made = run.driver.paced(rate, run.options.duration, run.driver.random_update)
        elapsed = time.time() - started
        after = run.sampler.scrape()
        run.wait_converged(latency_slo_s * 2)
        step_changes = [c for c in run.convergence.changes if started <= c.at <= started + elapsed + 1]
        latencies = [c.latency if c.latency is not None else float("inf") for c in step_changes if not c.deleted]
        queue_p99 = histogram_quantile(buckets(before, "workqueue_queue_duration_seconds"),
                                       buckets(after, "workqueue_queue_duration_seconds"), 0.99)
        latency_p99 = percentile(latencies, 0.99)
        step = {"rate": round(rate, 1), "achieved_changes_per_s": round(made / elapsed, 1),
                "queue_latency_p99_s": None if queue_p99 is None else round(queue_p99, 3),
                "latency_p99_s": None if latency_p99 is None else round(latency_p99, 3)}
        figures["steps"].append(step)
        if (queue_p99 or 0) > queue_slo_s or (latency_p99 or 0) > latency_slo_s:
            step["breaks_slo"] = reached = True
            break
        capacity = step["achieved_changes_per_s"]
        rate *= factor
    figures["capacity_reached"] = reached
    figures["capacity_changes_per_s"] = capacity if reached else None
    if not reached:  # every step passed: the capacity lies somewhere above the last one
        figures["capacity_at_least_changes_per_s"] = capacity
    return _finish(run, figures)


SCENARIOS = {"steady": steady, "burst": burst, "churn": churn, "stress": stress}
