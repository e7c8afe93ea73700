"""``python -m loadtest suite``: a short version of every scenario and every fault (``make loadtest``).

Where it sits: on top of ``loadtest.cli``; it runs each entry of :data:`SUITE` as its own run (its own
control plane and Redis, so the restart faults touch nothing shared), gated by ``loadtest/slo-smoke.yaml``
(zero overlaps, zero lost updates, every fault recovered), and exits 1 if any run broke a gate. Meant to
finish in under 10 minutes on a 2-core machine.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

__all__ = ["SUITE", "main"]

SMOKE_SLO = str(Path(__file__).resolve().parent / "slo-smoke.yaml")
ROOT = Path(__file__).resolve().parents[1]
# The example operator driven as a black box: only its command line, its CRD and "converged" are given.
BLACK_BOX = (f"{shlex.quote(sys.executable)} -m shard_operator.cli run --app examples.widgets:operator "
             "--kubeconfig {kubeconfig} --redis-url {redis_url} --namespace {namespace} "
             "--lease-namespace {namespace} --pod-name {pod} --metrics-address 127.0.0.1:{metrics_port} "
             "--log-level WARNING")

SUITE: list[list[str]] = [
    ["steady", "--objects", "60", "--rate", "5", "--duration", "70", "--pods", "2",
     "--fault", "kill-worker:25", "--fault", "stop-worker", "--fault", "kill-leader", "--fault", "redis-restart",
     "--fault", "redis-lose-data", "--fault", "apiserver-restart"],
    ["churn", "--objects", "40", "--rate", "5", "--duration", "40",
     "--fault", "api-latency", "--fault", "redis-latency", "--fault", "api-reset", "--fault", "redis-reset",
     "--fault", "api-down", "--fault", "redis-down"],
    # I4 is judged away from restarts (a new leader re-adds every key): the invalid objects go here.
    ["burst", "--objects", "200", "--duration", "20", "--fault", "throttle", "--fault", "invalid-burst:20"],
    ["stress", "--objects", "50", "--rate", "10", "--duration", "8", "--max-steps", "4"],
    ["scale", "--objects", "60"],
    ["burst", "--objects", "100", "--duration", "10", "--operator-cmd", BLACK_BOX,
     "--crd", str(ROOT / "deploy" / "widget-crd.yaml"), "--fault", "redis-restart"],
]


def main(argv: list[str]) -> int:
    from loadtest.cli import main as run

    results = []
    started = time.time()
    for entry in SUITE:
        t0 = time.time()
        code = run([*entry, "--slo", SMOKE_SLO, "--no-progress", *argv])
        results.append((entry, code, round(time.time() - t0)))
    print("\nsuite:")
    for entry, code, took in results:
        faults = [entry[i + 1] for i, a in enumerate(entry) if a == "--fault"]
        mode = " (black box)" if "--operator-cmd" in entry else ""
        print(f"  {'ok    ' if code == 0 else 'BROKEN'} {entry[0] + mode:<19} {took:>4}s  "
              f"faults: {', '.join(faults) or '-'}")
    print(f"  total {time.time() - started:.0f}s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
