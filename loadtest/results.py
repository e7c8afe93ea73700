"""A run's results: measurements, the checker's verdict and the faults, as one dict with stable fields.

Where it sits: the last step of a :class:`~loadtest.runner.Run`, before ``loadtest.report`` writes it
out and ``loadtest.slo`` gates it. The field names are documented in docs/loadtest.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loadtest.checker import Final, check
from loadtest.convergence import percentile
from loadtest.faults import recovery_times
from loadtest.recorder import read_records, spans
from loadtest.sampling import histogram_quantile

if TYPE_CHECKING:
    from loadtest.runner import Run

__all__ = ["gather"]

# Around a fault, keys are re-added by a new leader's relist (lease 6 s in the lab) or lose their failure
# counts: I4 is judged on the calm stretches between faults.
RESET_MARGIN_S = 10.0


def gather(run: Run, finals: dict[str, Final], extra: dict[str, Any]) -> dict[str, Any]:
    """Stop the sampler, judge the run and return its results (the fields docs/loadtest.md lists)."""
    run.sampler.stop()
    run.sampler.count_apiserver_requests()
    o = run.options
    changes = [c for c in run.convergence.changes if c.key not in run.driver.invalid]
    latencies = [c.latency for c in changes if c.latency is not None]
    invalid = set(run.driver.invalid) | {k for k in finals if k.split("/", 1)[1].startswith("invalid-")}
    recorded = not o.operator_cmd
    verdict = check(spans(read_records(run.record_sink)) if recorded else [], finals,
                    changes=len(changes), expected_failing=invalid,
                    resets=[(e.start - RESET_MARGIN_S, e.end + RESET_MARGIN_S) for e in run.events
                            if e.name not in ("invalid-burst", "throttle")])
    recovery_times(run.events, run.convergence.changes, invalid)
    series = run.sampler.series
    last: dict[str, Any] = next((p for p in reversed(series) if "reconciles_total" in p), {})
    first_buckets: dict[float, float] = next((p["queue_buckets"] for p in series if "queue_buckets" in p), {})

    # The recorder counts every reconcile of every process; the pods' counters restart with the pods
    # (scale starts new ones), so they are the fallback for a black box only.
    reconciles = (verdict.records - verdict.unfinished) if recorded else last.get("reconciles_total", 0.0)
    server = dict(run.sampler.apiserver_requests)
    driver_verbs = {"POST": run.driver.requests["create"], "PATCH": run.driver.requests["update"],
                    "DELETE": run.driver.requests["delete"], "LIST": run.driver.requests["list"]}
    operator_side = {verb: max(0.0, n - driver_verbs.get(verb, 0)) for verb, n in server.items()}
    cpu = sum(run.sampler.cpu_by_pid.values())
    return {
        "run_id": run.id, "scenario": o.scenario, "machine": _machine(),
        "options": {"objects": o.objects, "rate": o.rate, "duration_s": o.duration, "workers": o.workers,
                    "threads": o.threads, "pods": o.pods, "work_s": o.work_s,
                    "faults": [f"{f.name}{':' + str(f.arg) if f.arg else ''}" for f in o.faults],
                    "operator_cmd": o.operator_cmd, "converged_jsonpath": o.converged_jsonpath,
                    "converged_value": o.converged_value, **run.lab.info()},
        "started": run.started, "phases": run.phases,
        "latency": {"changes": len(changes), "p50_s": _r(percentile(latencies, 0.5)),
                    "p90_s": _r(percentile(latencies, 0.9)), "p99_s": _r(percentile(latencies, 0.99)),
                    "max_s": _r(max(latencies) if latencies else None),
                    "unconverged": sum(1 for c in changes if c.converged_at is None and not c.deleted)},
        "queue": {"latency_p99_s": _r(histogram_quantile({}, last.get("queue_buckets", first_buckets), 0.99)),
                  "max_depth": max((p.get("queue_depth", 0) for p in series), default=0)},
        "reconciles": reconciles,
        "api_requests": {"by_verb": server, "operator_by_verb": operator_side,
                         "operator_per_reconcile": {v: round(n / reconciles, 3) for v, n in operator_side.items()
                                                    if reconciles and n}},
        "resources": {"cpu_s": round(cpu, 2),
                      "cpu_s_per_1000_reconciles": round(1000 * cpu / reconciles, 2) if reconciles else None,
                      "rss_peak_mb": {k: round(v, 1) for k, v in run.sampler.rss_peak_by_role.items()},
                      "rss_peak_mb_by_process": {k: round(v, 1) for k, v in run.sampler.rss_peak_by_process.items()},
                      "redis_used_memory_mb_max": max((p.get("redis_used_memory_mb", 0) for p in series),
                                                      default=None),
                      "redis_ops_per_s_max": max((p.get("redis_ops_per_s", 0) for p in series), default=None)},
        "checker": {**verdict.to_dict(), "recorded": recorded},
        "faults": [{**e.to_dict(), "offset_s": round(e.start - run.started, 1)} for e in run.events],
        "driver": {"requests": dict(run.driver.requests), "retried_failures": dict(run.driver.failures)},
        "series": [{k: v for k, v in p.items() if k != "queue_buckets"} for p in series],
        "changes": [[round(c.at - run.started, 3), c.latency, c.kind] for c in changes],
        **extra,
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()}
