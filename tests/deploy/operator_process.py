"""The Website example as the deploy tests run it: ``shard-operator run`` as a subprocess
(:class:`OperatorProcess`), and :data:`recorded_website`, the same operator with every reconcile written to
the lab's reconcile recorder (``$LOADTEST_RECORD``), so a test can check I1 and I2 from the records
(``loadtest.checker``) while the StatefulSet's pods run it (``--app tests.deploy.operator_process:recorded_website``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

from examples import website
from loadtest.workload import claim_id, recorder
from shard_operator import Context, Operator, Request, Result
from shard_operator.errors import ClaimLostError, ConflictError
from shard_operator.testing.process import free_port

__all__ = ["OperatorProcess", "recorded", "recorded_website"]

ROOT = Path(__file__).resolve().parents[2]


def recorded(operator: Operator) -> Operator:
    """``operator`` with each reconcile recorded: its start (after the claim) and its end, with the generation
    it saw and its outcome (``ok``, ``gone``, ``conflict``, ``fenced`` or ``error``; see ``loadtest.recorder``).
    Without ``$LOADTEST_RECORD`` it is ``operator`` unchanged. Same name and handlers, so the same RBAC."""
    inner = operator.reconcile

    def reconcile(request: Request, ctx: Context) -> Result | None:
        rec = recorder()
        if rec is None:
            return inner(request, ctx)
        rid = rec.start(request.key, shard=ctx.shard, claim=claim_id(ctx.claim))
        outcome, seen = "error", None
        try:
            obj = ctx.get(request)
            seen = None if obj is None else int(obj["metadata"].get("generation") or 0)
            result = inner(request, ctx)
            outcome = "gone" if obj is None else "ok"
            return result
        except ConflictError:
            outcome = "conflict"
            raise
        except ClaimLostError:
            outcome = "fenced"
            raise
        finally:
            rec.end(rid, request.key, outcome=outcome, generation=seen)

    return dataclasses.replace(operator, reconcile=reconcile)


recorded_website = recorded(website.operator)


class OperatorProcess:
    """``shard-operator run --app examples.website:operator`` as a subprocess in its own session."""

    def __init__(self, kubeconfig: Path, redis_url: str, namespace: str, log: Path, **extra: str) -> None:
        self.port = free_port()
        options = {"APP": "examples.website:operator", "KUBECONFIG": str(kubeconfig), "REDIS_URL": redis_url,
                   "NAMESPACE": namespace, "LEASE_NAMESPACE": namespace, "POD_NAME": "website-0",
                   "WORKERS": "1", "JOB_WORKERS": "1", "QPS": "0", "METRICS_ADDRESS": f"127.0.0.1:{self.port}",
                   "LEASE_DURATION": "3", "RENEW_DEADLINE": "2", "RETRY_PERIOD": "0.5", "DRAIN_TIMEOUT": "5", **extra}
        env = {**os.environ, "PYTHONPATH": str(ROOT), **{f"SHARD_OPERATOR_{k}": v for k, v in options.items()}}
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "shard_operator.cli", "run"], env=env, cwd=ROOT,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def reconciles(self) -> float:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("controller_runtime_reconcile_total{"))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
