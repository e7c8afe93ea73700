"""``shard-operator run`` of the Website example as a subprocess, for the deploy tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from shard_operator.testing.process import free_port

__all__ = ["OperatorProcess"]

ROOT = Path(__file__).resolve().parents[2]


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
