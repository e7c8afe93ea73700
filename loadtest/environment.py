"""The lab's environment: control plane, Redis, toxiproxy and the operator's pods as processes.

Where it sits: ``loadtest.runner`` opens a :class:`Lab` and drives load and faults against it. By default
it starts the embedded control plane (``shard_operator.testing.ControlPlane``) and a redis-server
(``RedisServer``); ``--kubeconfig`` / ``--redis-url`` use existing ones instead. With ``--toxiproxy`` the
operator reaches both through toxiproxy (``loadtest.toxiproxy``), so network faults can be injected.

An :class:`OperatorPod` is one manager process (``shard-operator run``) or one black-box operator
command, in its own process group, with a free metrics port: R pods = R separate processes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadtest.toxiproxy import Toxiproxy
from shard_operator.testing import ControlPlane, RedisServer
from shard_operator.testing.process import free_port

__all__ = ["Lab", "LabOptions", "OperatorPod", "process_tree"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LabOptions:
    kubeconfig: str | None = None
    redis_url: str | None = None
    toxiproxy: bool = False
    apiserver_flags: list[str] = field(default_factory=list)
    workdir: Path | None = None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        found.append(current)
        for task in tasks:
            with suppress(OSError):
                todo += [int(child) for child in (task / "children").read_text().split()]
    return found


class OperatorPod:
    """One operator process group: ``argv`` started with ``env``; ``metrics_port`` serves /metrics."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], metrics_port: int | None,
                 log_path: Path, *, shell: bool = False) -> None:
        self.name, self.argv, self.env, self.metrics_port = name, argv, env, metrics_port
        self.log_path, self.shell = log_path, shell
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self) -> OperatorPod:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv[0] if self.shell else self.argv, env=self.env, cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, shell=self.shell)
        log.close()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        if self.metrics_port is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"operator pod {self.name} exited:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"operator pod {self.name} was not ready within {timeout:.0f}s")

    def workers(self) -> list[int]:
        """The worker processes (the manager's children)."""
        pid = self.pid
        return [p for p in process_tree(pid) if p != pid] if pid else []

    def signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole pod (manager and workers), as a node loss would."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.signal_group(signal.SIGKILL)
            return
        self.signal_group(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        self.signal_group(signal.SIGKILL)


class Lab:
    """Control plane + Redis (+ toxiproxy) for one run; a context manager. ``operator_kubeconfig`` and
    ``operator_redis_url`` are what the operator uses (through toxiproxy when it is on)."""

    def __init__(self, options: LabOptions) -> None:
        self.options = options
        self.stack = ExitStack()
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="loadtest-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.plane: ControlPlane | None = None
        self.redis: RedisServer | None = None
        self.toxiproxy: Toxiproxy | None = None
        self.kubeconfig = options.kubeconfig or ""
        self.redis_url = options.redis_url or ""
        self.operator_kubeconfig = self.kubeconfig
        self.operator_redis_url = self.redis_url

    def __enter__(self) -> Lab:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _start(self) -> None:
        if not self.options.kubeconfig:
            self.plane = self.stack.enter_context(ControlPlane(apiserver_flags=self.options.apiserver_flags))
            self.kubeconfig = str(self.plane.kubeconfig)
        if not self.options.redis_url:
            self.redis = RedisServer(workdir=self.workdir / "redis")
            self.stack.enter_context(self.redis)
            self.redis_url = self.redis.url
        self.operator_kubeconfig, self.operator_redis_url = self.kubeconfig, self.redis_url
        if self.options.toxiproxy:
            self.toxiproxy = self.stack.enter_context(Toxiproxy(self.workdir / "toxiproxy.log"))
            self.operator_kubeconfig = self._proxied_kubeconfig()
            redis_host, _, rest = self.redis_url.split("://", 1)[1].partition(":")
            redis_port, _, db = rest.partition("/")
            listen = self.toxiproxy.create("redis", f"{redis_host}:{redis_port}")
            self.operator_redis_url = f"redis://{listen}/{db or '0'}"

    def _proxied_kubeconfig(self) -> str:
        assert self.toxiproxy is not None
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
        scheme, _, address = cluster["server"].partition("://")
        host_port = address.split("/", 1)[0]
        listen = self.toxiproxy.create("apiserver", host_port)
        cluster["server"] = f"{scheme}://{listen}"
        path = self.workdir / "kubeconfig-proxied"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    # -- operator pods ---------------------------------------------------------------------

    def sample_pod(self, index: int, *, namespace: str, workers: int, threads: int, record: str,
                   extra_env: dict[str, str], prefix: str = "lab") -> OperatorPod:
        """A manager process running the sample workload (``loadtest.workload:operator``)."""
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LOADTEST_RECORD": record, **extra_env}
        argv = [sys.executable, "-m", "shard_operator.cli", "run", "--app", "loadtest.workload:operator",
                "--kubeconfig", self.operator_kubeconfig, "--redis-url", self.operator_redis_url,
                "--namespace", namespace, "--lease-namespace", namespace, "--pod-name", f"{prefix}-{index}",
                "--workers", str(workers), "--threads", str(threads),
                "--metrics-address", f"127.0.0.1:{port}", "--log-level", "WARNING",
                "--claim-ttl", "5", "--member-ttl", "4", "--heartbeat-interval", "1",
                "--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1"]
        return OperatorPod(f"{prefix}-{index}", argv, env, port, self.workdir / f"{prefix}-{index}.log")

    def blackbox_pod(self, index: int, command: str, *, namespace: str, metrics_port: int | None) -> OperatorPod:
        """Any operator, started by a shell command (``exec``-ed, so the pod's process is the operator);
        placeholders: {kubeconfig} {redis_url} {namespace} {pod} {metrics_port} (also in the environment
        as KUBECONFIG, REDIS_URL, LOADTEST_NAMESPACE, POD_NAME, LOADTEST_METRICS_PORT)."""
        port = metrics_port or free_port()
        values = {"kubeconfig": self.operator_kubeconfig, "redis_url": self.operator_redis_url,
                  "namespace": namespace, "pod": f"lab-{index}", "metrics_port": str(port)}
        env = {**os.environ, "KUBECONFIG": self.operator_kubeconfig, "REDIS_URL": self.operator_redis_url,
               "LOADTEST_NAMESPACE": namespace, "POD_NAME": values["pod"], "LOADTEST_METRICS_PORT": str(port)}
        formatted = "exec " + command.format(**{k: shlex.quote(v) for k, v in values.items()})
        return OperatorPod(values["pod"], [formatted], env, port if "{metrics_port}" in command else None,
                           self.workdir / f"lab-{index}.log", shell=True)

    def use_service_account(self, client: Any) -> None:
        """Make the operator a service account bound to cluster-admin instead of the admin in system:masters,
        whom kube-apiserver exempts from its max-in-flight limits (so the throttle fault gets its 429s)."""
        from shard_operator.source import Resource

        sa, namespace = "loadtest-operator", "default"
        bodies = [
            (Resource("", "v1", "serviceaccounts"), f"/api/v1/namespaces/{namespace}/serviceaccounts",
             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}),
            (Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False),
             "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": sa},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
              "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]}),
        ]
        for resource, url, body in bodies:
            with contextlib.suppress(Exception):  # already there from an earlier run on this cluster
                client.request("create", resource, url, body=body)
        answer = client.request("create", Resource("", "v1", "serviceaccounts"),
                                f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
                                body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                      "spec": {"expirationSeconds": 86400}})
        config = yaml.safe_load(Path(self.operator_kubeconfig).read_text())
        for user in config["users"]:
            user["user"] = {"token": answer["status"]["token"]}
        path = self.workdir / "kubeconfig-service-account"
        path.write_text(yaml.safe_dump(config))
        self.operator_kubeconfig = str(path)

    def info(self) -> dict[str, Any]:
        return {"embedded_control_plane": self.plane is not None, "embedded_redis": self.redis is not None,
                "toxiproxy": self.toxiproxy is not None}
