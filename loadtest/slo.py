"""SLO gates: thresholds from a small YAML file; a run that breaks one exits non-zero (for CI).

Where it sits: after ``loadtest.report`` has the run's results, :func:`evaluate` compares them with the
gates. Every key is optional; a gate whose figure the run did not measure is reported as ``unmeasured``
and does not fail the run. Example (``loadtest/slo.yaml``, the default)::

    latency_p99_s: 5.0          # create/update -> status, p99 over the run
    queue_latency_p99_s: 1.0    # p99 of workqueue_queue_duration_seconds over the run
    overlaps: 0                 # I1 violations
    lost: 0                     # I2 lost updates
    backoff_violations: 0       # I4
    recovery_s: 60.0            # every fault's time to recover (a fault that never recovered, or was
                                # never injected, breaks it)
    unconverged: 0              # changes that never converged (outside invalid objects)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_SLO", "evaluate", "load_slo"]

DEFAULT_SLO = Path(__file__).resolve().parent / "slo.yaml"
KNOWN = ("latency_p99_s", "queue_latency_p99_s", "overlaps", "lost", "backoff_violations", "recovery_s",
         "unconverged")


def load_slo(path: Path | None) -> dict[str, float]:
    data = yaml.safe_load((path or DEFAULT_SLO).read_text()) or {}
    unknown = set(data) - set(KNOWN)
    if unknown:
        raise ValueError(f"{path}: unknown SLO keys {sorted(unknown)}; known: {', '.join(KNOWN)}")
    return {key: float(value) for key, value in data.items()}


def _figure(results: dict[str, Any], key: str) -> Any:
    checker = results.get("checker") or {}
    return {
        "latency_p99_s": (results.get("latency") or {}).get("p99_s"),
        "queue_latency_p99_s": (results.get("queue") or {}).get("latency_p99_s"),
        "overlaps": len(checker["overlaps"]) if "overlaps" in checker and checker.get("recorded") else None,
        "lost": len(checker["lost"]) if "lost" in checker else None,
        "backoff_violations": (len(checker["backoff_violations"])
                               if "backoff_violations" in checker and checker.get("recorded") else None),
        "unconverged": (results.get("latency") or {}).get("unconverged"),
    }.get(key)


def evaluate(results: dict[str, Any], slo: dict[str, float]) -> list[dict[str, Any]]:
    """One entry per gate: ``{"gate", "limit", "value", "status": "ok" | "broken" | "unmeasured"}``, plus
    ``"reason"`` on a ``recovery_s`` gate broken by a fault that was not injected."""
    verdicts = []
    for gate, limit in slo.items():
        if gate == "recovery_s":
            for fault in results.get("faults", []):
                value = fault.get("recovery_s")
                injected = fault.get("injected", True)
                broken = not injected or value is None or value > limit
                verdict = {"gate": f"recovery_s[{fault['name']}@{fault['offset_s']}]", "limit": limit,
                           "value": value if injected else None, "status": "broken" if broken else "ok"}
                if not injected:
                    verdict["reason"] = f"not injected: {fault.get('detail', '')}"
                verdicts.append(verdict)
            continue
        value = _figure(results, gate)
        status = "unmeasured" if value is None else ("broken" if value > limit else "ok")
        verdicts.append({"gate": gate, "limit": limit, "value": value, "status": status})
    return verdicts
