"""Running ``shard-operator run`` as a real subprocess (one per simulated pod) and watching it.

Each manager runs in its own session, so a test can SIGKILL a whole "pod" (the manager and its
worker processes) with one ``killpg``, as losing a node would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from examples.widgets import WIDGETS
from shard_operator.cache import CacheReader
from shard_operator.client import is_observed
from shard_operator.testing.process import free_port

ROOT = Path(__file__).resolve().parents[2]
FAST_ELECTION = {"LEASE_DURATION": "3", "RENEW_DEADLINE": "2", "RETRY_PERIOD": "0.5"}
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


class ManagerProcess:
    """One ``shard-operator run`` subprocess; ``env`` entries are ``SHARD_OPERATOR_*`` without the prefix."""

    def __init__(self, pod: str, *, app: str, kubeconfig: Path, redis_url: str, namespace: str,
                 log_dir: Path, workers: int = 2, **env: str) -> None:
        self.pod = pod
        self.port = free_port()
        self.log_path = log_dir / f"{pod}.log"
        options = {"APP": app, "KUBECONFIG": str(kubeconfig), "REDIS_URL": redis_url, "NAMESPACE": namespace,
                   "LEASE_NAMESPACE": namespace, "POD_NAME": pod, "WORKERS": str(workers), "QPS": "0",
                   "METRICS_ADDRESS": f"127.0.0.1:{self.port}", "METRICS_DIR": str(log_dir / f"{pod}-metrics"),
                   "CLAIM_TTL": "3", "MEMBER_TTL": "2", "HEARTBEAT_INTERVAL": "0.5", "DRAIN_TIMEOUT": "10",
                   "RESTART_BACKOFF": "0.2", **FAST_ELECTION, **env}
        self.env = {**os.environ, **{f"SHARD_OPERATOR_{key}": value for key, value in options.items()}}
        self.env["PYTHONPATH"] = str(ROOT)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "shard_operator.cli", "run"], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                            start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def readyz(self) -> tuple[int, str]:
        try:
            return self.get("/readyz")
        except OSError:
            return 0, "down"

    @property
    def leading(self) -> bool:
        status, body = self.readyz()
        return status == 200 and "leader" in body

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(lambda: self.readyz()[0] == 200, timeout, f"{self.pod} to be ready", self)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if all(found.get(key) == value for key, value in labels.items()):
                total += float(match.group(3))
        return total

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the manager and its workers at once (the pod is lost)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Teardown: SIGTERM, then SIGKILL the whole group whatever is left."""
        if self.process is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def wait_for(check: Callable[[], bool], timeout: float, what: str, *managers: ManagerProcess) -> float:
    """Poll ``check`` until true; returns the seconds it took. The managers' logs explain a timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            logs = "\n".join(f"--- {m.pod} ---\n{m.log()[-4000:]}" for m in managers)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.1)
    return time.monotonic() - started


def unobserved(redis_url: str, namespace: str, expected: int) -> list[str]:
    """Widgets of ``namespace`` in the shared cache whose status is behind their spec (or missing ones).

    Reading the cache (which the leader fills from its watch) costs the API server nothing, so
    polling it does not disturb the request counts a test checks.
    """
    client = redis.Redis.from_url(redis_url)
    try:
        widgets = CacheReader(client).list(WIDGETS.name, namespace)
    finally:
        client.close()
    behind = [w["metadata"]["name"] for w in widgets if not (is_observed(w) and "observedGeneration" in
                                                            (w.get("status") or {}))]
    return behind + ["(missing)"] * max(0, expected - len(widgets))
