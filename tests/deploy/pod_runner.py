"""A test kubelet for the operator's StatefulSet: one operator process per pod object.

The embedded control plane runs kube-controller-manager's StatefulSet controller, so applying the generated
StatefulSet creates its pods ``<name>-0 … <name>-(R-1)`` for real, and scaling it creates and deletes them. There
is no container engine, scheduler or kubelet here, so the pods stay unscheduled; :class:`PodRunner` does what
the kubelet would do with them, and nothing else:

- for each pod object of the StatefulSet it starts one operator process with exactly the container's ``args``
  (after the image's ``shard-operator`` entrypoint) and ``env``, the downward API (``fieldRef``),
  ``secretKeyRef`` and ``$(VAR)`` references resolved from that pod as the kubelet resolves them, and the
  ServiceAccount's own token (TokenRequest) instead of the admin identity, so the generated RBAC is what is
  exercised; each ``secret`` volume the container mounts is written from the Secret into a folder of the pod's
  own (read-only files, ``items`` and ``defaultMode`` as given);
- it probes the container's ``readinessProbe`` (HTTP GET) and reports the pod ``Running`` and ``Ready``, or not
  ready, through the pod's status subresource, as the kubelet does; the StatefulSet's ``readyReplicas`` follows;
- a process that exits is started again (``restartPolicy: Always``) and counted in ``restartCount``;
- when the pod object is deleted (or replaced by a new pod of the same name) its process gets SIGTERM, and
  SIGKILL after the pod's ``terminationGracePeriodSeconds``.

Two things a pod network would provide are mapped: Service host names to the local Redis (``hosts``), and the
container's port to a free local port (every "pod" shares 127.0.0.1); so is the one thing of the container's file
system: an env value under a secret volume's ``mountPath`` points into that volume's local folder. An
unscheduled pod is deleted by the API server at once rather than after its grace period, so the process drains
after its pod object is gone; its token is not bound to the pod, so that drain can still release the Lease.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from shard_operator.client import Client
from shard_operator.errors import ApiError, ConflictError, NotFoundError
from shard_operator.source import Resource
from shard_operator.testing.process import free_port

__all__ = ["PODS", "STATEFULSETS", "PodProcess", "PodRunner"]

ROOT = Path(__file__).resolve().parents[2]
PODS = Resource("", "v1", "pods")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
SECRETS = Resource("", "v1", "secrets")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
RESTART_BACKOFF = 10.0  # the kubelet's first CrashLoopBackOff delay
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodProcess:
    """The process that runs one pod object (by uid), with the environment it was given."""

    name: str
    uid: str
    env: dict[str, str]
    ports: dict[int, int]  # containerPort -> local port
    process: subprocess.Popen[bytes]
    grace: float  # the pod's terminationGracePeriodSeconds
    restarts: int = 0
    ready: bool | None = None  # as last reported in the pod's status
    started_at: str = field(default_factory=_now)
    spawned: float = field(default_factory=time.monotonic)


class PodRunner:
    """Runs the pods of StatefulSet ``name`` in ``namespace`` as local processes; call :meth:`sync`, or
    :meth:`following` to sync from a thread. ``stopped`` holds the exit code of each pod's process after
    its pod was deleted, by pod name (the last one, for a name used twice)."""

    def __init__(self, admin: Client, control_plane: Any, namespace: str, name: str, folder: Path,
                 hosts: dict[str, str]) -> None:
        self.admin, self.control_plane, self.namespace, self.name = admin, control_plane, namespace, name
        self.folder, self.hosts = folder, hosts
        self.running: dict[str, PodProcess] = {}  # by pod name
        self.stopped: dict[str, int] = {}
        self._lock = threading.Lock()

    def pods(self) -> list[dict[str, Any]]:
        """The pod objects the StatefulSet controls (its controller owner reference)."""
        found = self.admin.request("list", PODS, PODS.path(self.namespace))["items"]
        return [pod for pod in found if any(ref.get("controller") and ref["kind"] == "StatefulSet"
                                            and ref["name"] == self.name
                                            for ref in pod["metadata"].get("ownerReferences", []))]

    def names(self) -> set[str]:
        with self._lock:
            return set(self.running)

    def sync(self) -> None:
        """Start a process for each new pod, stop those whose pod is gone, restart exited ones, report readiness."""
        wanted = {pod["metadata"]["name"]: pod for pod in self.pods() if not pod["metadata"].get("deletionTimestamp")}
        with self._lock:
            gone = [name for name, run in self.running.items()
                    if name not in wanted or wanted[name]["metadata"]["uid"] != run.uid]
        self._stop([self.running[name] for name in gone])
        for name, pod in wanted.items():
            run = self.running.get(name)
            if run is None:
                with self._lock:
                    self.running[name] = self._start(pod)
            elif run.process.poll() is not None and time.monotonic() - run.spawned > RESTART_BACKOFF:
                run.restarts += 1
                run.process, run.spawned, run.ready = self._spawn(pod, run.env), time.monotonic(), None
            self._report(self.running[name], pod)

    @contextlib.contextmanager
    def following(self, interval: float = 0.3) -> Iterator[None]:
        """Sync every ``interval`` seconds from a thread while the block runs; stop every process after it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(ApiError):
                    self.sync()
                stop.wait(interval)

        thread = threading.Thread(target=loop, name="pod-runner", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(60)
            self.close()

    # -- the container ---------------------------------------------------------------

    def _start(self, pod: dict[str, Any]) -> PodProcess:
        (container,) = pod["spec"]["containers"]
        ports = {port["containerPort"]: free_port() for port in container.get("ports", [])}
        env = self.environment(pod, container, ports, self._secret_volumes(pod, container))
        env["KUBECONFIG"] = str(self._kubeconfig(pod))
        meta = pod["metadata"]
        grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        return PodProcess(meta["name"], meta["uid"], env, ports, self._spawn(pod, env), grace)

    def _spawn(self, pod: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[bytes]:
        (container,) = pod["spec"]["containers"]
        with open(self.folder / f"{pod['metadata']['name']}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "shard_operator.cli", *container["args"]],
                                    env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def environment(self, pod: dict[str, Any], container: dict[str, Any], ports: dict[int, int],
                    mounts: dict[str, Path] | None = None) -> dict[str, str]:
        """The container's env as the kubelet resolves it, with the pod network's two mappings and paths under
        a ``mounts`` mount path (mount path -> local folder) pointing into the local folder."""
        resolved: dict[str, str] = {}
        for entry in container.get("env", []):
            if "value" in entry:
                value = _REFERENCE.sub(lambda m: resolved.get(m[1], m[0]), entry["value"])
            else:
                value = self._value_from(pod, entry["valueFrom"])
            resolved[entry["name"]] = value
        for service, local in self.hosts.items():  # the host of a URL, after its user info or its "//"
            for name, value in resolved.items():
                resolved[name] = re.sub(rf"(?<=[@/]){re.escape(service)}\b", local, value)
        for container_port, local_port in ports.items():  # the operator listens on ":<port>"
            for name, value in resolved.items():
                if value == f":{container_port}":
                    resolved[name] = f"127.0.0.1:{local_port}"
        for mount_path, local in (mounts or {}).items():
            for name, value in resolved.items():
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    resolved[name] = str(local) + value[len(mount_path.rstrip("/")):]
        return resolved

    def _secret_volumes(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Path]:
        """Write each secret volume the container mounts into a folder of this pod; mount path -> folder."""
        volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            source = volumes[mount["name"]].get("secret")
            if source is None:
                continue
            data = self.admin.get(SECRETS, source["secretName"], self.namespace).get("data") or {}
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            folder = self.folder / "volumes" / pod["metadata"]["uid"] / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            for item in items:
                file = folder / item["path"]
                file.write_bytes(base64.b64decode(data[item["key"]]))
                file.chmod(item.get("mode", source.get("defaultMode", 0o644)) & 0o444 | 0o400)
            mounts[mount["mountPath"]] = folder
        return mounts

    def _value_from(self, pod: dict[str, Any], source: dict[str, Any]) -> str:
        if "fieldRef" in source:
            value: Any = pod
            for part in source["fieldRef"]["fieldPath"].split("."):
                value = value[part]
            return str(value)
        ref = source["secretKeyRef"]
        secret = self.admin.get(SECRETS, ref["name"], self.namespace)
        return base64.b64decode(secret["data"][ref["key"]]).decode()

    def _kubeconfig(self, pod: dict[str, Any]) -> Path:
        account = pod["spec"]["serviceAccountName"]
        path = SERVICE_ACCOUNTS.path(self.namespace) + f"/{account}/token"
        token = self.admin.request("create", SERVICE_ACCOUNTS, path, body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
        file = self.folder / f"{pod['metadata']['name']}.kubeconfig"
        file.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "c", "cluster": {"server": self.control_plane.server_url,
                                                   "certificate-authority": str(self.control_plane.certs.ca_cert)}}],
            "users": [{"name": account, "user": {"token": token["status"]["token"]}}],
            "contexts": [{"name": "pod", "context": {"cluster": "c", "user": account}}]}))
        return file

    # -- status: what the kubelet reports ---------------------------------------------

    def _probe(self, run: PodProcess, container: dict[str, Any]) -> bool:
        get = (container.get("readinessProbe") or {}).get("httpGet")
        if run.process.poll() is not None:
            return False
        if get is None:
            return True
        port = get["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{run.ports[port]}{get['path']}", timeout=2) as answer:
                return bool(200 <= answer.status < 400)
        except OSError:
            return False

    def _report(self, run: PodProcess, pod: dict[str, Any]) -> None:
        (container,) = pod["spec"]["containers"]
        ready = self._probe(run, container)
        if ready == run.ready:
            return
        now, flag = _now(), "True" if ready else "False"
        status = {"phase": "Running", "startTime": run.started_at, "conditions": [
            {"type": kind, "status": flag, "lastTransitionTime": now}
            for kind in ("Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                   "ready": ready, "started": True, "restartCount": run.restarts,
                                   "state": {"running": {"startedAt": run.started_at}}}]}
        with contextlib.suppress(NotFoundError, ConflictError):  # the pod is gone, or replaced (uid)
            self.admin.patch(PODS, pod, {"metadata": {"uid": run.uid}, "status": status}, subresource="status")
            run.ready = ready

    # -- stopping -------------------------------------------------------------------------

    def _stop(self, runs: list[PodProcess]) -> None:
        """SIGTERM every process at once, then wait for each; SIGKILL what outlives its pod's grace period."""
        started = time.monotonic()
        for run in runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGTERM)
        for run in runs:
            try:
                code = run.process.wait(max(0.1, started + run.grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)
                code = run.process.wait(5)
            with self._lock:
                self.stopped[run.name] = code
                if self.running.get(run.name) is run:
                    del self.running[run.name]

    def close(self) -> None:
        with self._lock:
            runs = list(self.running.values())
        self._stop(runs)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.folder.glob("*.log")))
