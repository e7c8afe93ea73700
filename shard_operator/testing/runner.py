"""Integration-testing an operator: ``shard-operator run --app module:attr`` as a real subprocess.

Like kopf's ``KopfRunner``: an :class:`OperatorRunner` starts the manager (the leader's informers, the
shared cache, the worker processes) against a Kubernetes API server (the embedded control plane of
:mod:`.controlplane`, or whatever ``KUBECONFIG`` names) and a Redis (given, or started for the runner),
and a test creates objects and waits for the operator to act on them::

    with OperatorRunner("myoperator:operator", kubeconfig=plane.kubeconfig, namespace="test") as runner:
        runner.wait_ready()
        kube.create(WIDGETS, widget("w1", "test", size=3))
        runner.wait_for(lambda: is_observed(kube.get(WIDGETS, "w1", "test")), timeout=30)
    assert runner.exit_code == 0, runner.output

The manager runs in its own session, so :meth:`kill` loses the whole "pod" (the manager and its workers)
at once; leaving the ``with`` block sends SIGTERM and waits for a clean drain (SIGKILL after
``stop_timeout``). The metrics and health port is picked free. The pytest fixture is ``operator_runner``
(:mod:`.fixtures`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from shard_operator.testing.process import free_port
from shard_operator.testing.redis_server import RedisServer

__all__ = ["TEST_SETTINGS", "OperatorRunner"]

#: Settings that make a test manager react in seconds (``SHARD_OPERATOR_*`` without the prefix): a short
#: Lease, claims and heartbeats, no client-side API rate limit.
TEST_SETTINGS = {"LEASE_DURATION": "3", "RENEW_DEADLINE": "2", "RETRY_PERIOD": "0.5", "CLAIM_TTL": "3",
                 "MEMBER_TTL": "2", "HEARTBEAT_INTERVAL": "0.5", "DRAIN_TIMEOUT": "10",
                 "RESTART_BACKOFF": "0.2", "QPS": "0"}
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


class OperatorRunner:
    """One ``shard-operator run`` subprocess; a context manager (start on enter, SIGTERM on exit).

    ``app`` is ``module:attribute`` (importable from ``cwd``, default the current folder). ``redis_url``
    None starts a redis-server for this runner. ``namespace`` scopes the watches and holds the Lease.
    ``settings`` are more ``SHARD_OPERATOR_*`` options without the prefix (over :data:`TEST_SETTINGS`);
    ``args`` are more command-line arguments. stdout and stderr are kept in files under a temporary
    folder (``log_dir`` to keep them) and read with :attr:`stdout`, :attr:`stderr` and :attr:`output`.
    """

    def __init__(self, app: str, *, kubeconfig: str | Path | None = None, redis_url: str | None = None,
                 namespace: str | None = None, workers: int = 1, pod: str = "operator-runner",
                 settings: Mapping[str, str] | None = None, args: Sequence[str] = (),
                 cwd: str | Path | None = None, log_dir: str | Path | None = None,
                 stop_timeout: float = 15.0) -> None:
        self.app, self.pod, self.args, self.stop_timeout = app, pod, list(args), stop_timeout
        self.cwd = Path(cwd or os.getcwd())
        self._own_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="operator-runner-"))
        self.port = free_port()
        self._redis_url = redis_url
        self._redis: RedisServer | None = None
        options = {"WORKERS": str(workers), "POD_NAME": pod, "METRICS_ADDRESS": f"127.0.0.1:{self.port}",
                   "METRICS_DIR": str(self.log_dir / f"{pod}-metrics"), **TEST_SETTINGS}
        if kubeconfig is not None:
            options["KUBECONFIG"] = str(kubeconfig)
        if namespace is not None:
            options.update(NAMESPACE=namespace, LEASE_NAMESPACE=namespace)
        options.update(settings or {})
        self._options = options
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> OperatorRunner:
        """Start the manager (and a redis-server first, when none was given); returns at once."""
        if self._redis_url is None:
            self._redis = RedisServer().start()
            self._redis_url = self._redis.url
        env = {**os.environ, **{f"SHARD_OPERATOR_{key}": value for key, value in self._options.items()},
               "SHARD_OPERATOR_REDIS_URL": self._redis_url}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.cwd), os.environ.get("PYTHONPATH")]))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log("stdout"), "ab") as out, open(self._log("stderr"), "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shard_operator.cli", "run", "--app", self.app, *self.args],
                env=env, stdout=out, stderr=err, cwd=self.cwd, start_new_session=True)
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_timeout`` for the drain, then SIGKILL whatever is left of the group.
        Returns the exit code (negative: the signal that ended it)."""
        if self.process is not None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        return self.exit_code

    def close(self) -> None:
        """:meth:`stop`, and remove the temporary log folder."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> OperatorRunner:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def terminate(self) -> None:
        """Send SIGTERM to the manager (it drains its workers and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the manager and its workers at once (the pod is lost)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        """Wait for the manager to exit; its exit code (``subprocess.TimeoutExpired`` after ``timeout``)."""
        if self.process is None:
            raise RuntimeError("the runner was not started")
        return self.process.wait(timeout)

    # -- what it says ----------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the runner was not started")
        return self.process.pid

    @property
    def redis_url(self) -> str:
        if self._redis_url is None:
            raise RuntimeError("the runner was not started")
        return self._redis_url

    @property
    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return self.process.poll() if self.process is not None else None

    @property
    def stdout(self) -> str:
        return self._read("stdout")

    @property
    def stderr(self) -> str:
        """The manager's log lines (logging writes to stderr)."""
        return self._read("stderr")

    @property
    def output(self) -> str:
        """stdout then stderr, for an assertion message."""
        return self.stdout + self.stderr

    def get(self, path: str) -> tuple[int, str]:
        """An HTTP GET of the manager's metrics and health server: (status, body); OSError when down."""
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

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` on ``/metrics`` whose labels include ``labels``."""
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

    # -- waiting -----------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0, what: str = "the condition",
                 *, interval: float = 0.1) -> float:
        """Poll ``predicate`` until it is true; returns the seconds it took. After ``timeout``, or if the
        manager exits meanwhile, raises AssertionError with the end of its output."""
        started = time.monotonic()
        while not predicate():
            if self.exit_code is not None:
                raise AssertionError(f"{self.pod} exited with {self.exit_code} while waiting for {what}\n"
                                     f"{self.output[-4000:]}")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.output[-4000:]}")
            time.sleep(interval)
        return time.monotonic() - started

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait until ``/readyz`` answers 200: the caches are synced and the workers run."""
        return self.wait_for(lambda: self.readyz()[0] == 200, timeout, f"{self.pod} to be ready")

    def _log(self, stream: str) -> Path:
        return self.log_dir / f"{self.pod}.{stream}.log"

    def _read(self, stream: str) -> str:
        path = self._log(stream)
        return path.read_text(errors="replace") if path.exists() else ""
