"""A test "kubelet" for the operator's StatefulSet: one operator process per pod object.

There is no container engine here, so the pods of the generated StatefulSet are run as local processes:
each gets exactly the container's ``args`` (after the image's ``shard-operator`` entrypoint) and ``env``,
with the downward API (``fieldRef``), ``secretKeyRef`` and ``$(VAR)`` references resolved as the kubelet
would, and the ServiceAccount's own token (TokenRequest) instead of the admin identity, so the generated
RBAC is what is exercised. Two things a pod network would provide are mapped: Service host names to the
local Redis (``hosts``), and the container's metrics port to a free local port (every "pod" shares
127.0.0.1). :class:`StatefulSetStandIn` creates and deletes the pod objects from the StatefulSet's
replicas and template, as kube-controller-manager does, for environments without one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from shard_operator.client import Client
from shard_operator.errors import NotFoundError
from shard_operator.source import Resource
from shard_operator.testing.process import free_port

__all__ = ["PODS", "STATEFULSETS", "PodRunner", "StatefulSetStandIn"]

ROOT = Path(__file__).resolve().parents[2]
PODS = Resource("", "v1", "pods")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
SECRETS = Resource("", "v1", "secrets")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class StatefulSetStandIn:
    """Keeps pods ``<name>-0 … <name>-(replicas-1)`` of a StatefulSet in step with its replicas."""

    def __init__(self, admin: Client, namespace: str, name: str) -> None:
        self.admin, self.namespace, self.name = admin, namespace, name

    def sync(self) -> None:
        statefulset = self.admin.get(STATEFULSETS, self.name, self.namespace)
        replicas = int(statefulset["spec"]["replicas"])
        template = statefulset["spec"]["template"]
        existing = {pod["metadata"]["name"] for pod in self.pods()}
        for ordinal in range(replicas):
            name = f"{self.name}-{ordinal}"
            if name not in existing:
                owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": self.name,
                         "uid": statefulset["metadata"]["uid"], "controller": True}
                self.admin.create(PODS, {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
                                         "metadata": {"name": name, "namespace": self.namespace,
                                                      "labels": template["metadata"]["labels"],
                                                      "ownerReferences": [owner]}})
        for name in existing:
            if int(name.rsplit("-", 1)[1]) >= replicas:
                with contextlib.suppress(NotFoundError):
                    self.admin.delete(PODS, {"metadata": {"name": name, "namespace": self.namespace}},
                                      precondition=False)

    def pods(self) -> list[dict[str, Any]]:
        found = self.admin.request("list", PODS, PODS.path(self.namespace))["items"]
        return [pod for pod in found if pod["metadata"]["name"].rsplit("-", 1)[0] == self.name]


class PodRunner:
    """Runs one operator process per pod object of ``namespace`` whose name starts with ``prefix``."""

    def __init__(self, admin: Client, control_plane: Any, namespace: str, prefix: str, folder: Path,
                 hosts: dict[str, str]) -> None:
        self.admin, self.control_plane, self.namespace, self.prefix = admin, control_plane, namespace, prefix
        self.folder, self.hosts = folder, hosts
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def sync(self, pods: list[dict[str, Any]]) -> None:
        """Start a process for each new pod object and stop (SIGTERM, drain) those whose pod is gone."""
        wanted = {pod["metadata"]["name"]: pod for pod in pods if not pod["metadata"].get("deletionTimestamp")}
        for name in list(self.running):
            if name not in wanted:
                self._stop(name)
        for name, pod in wanted.items():
            if name not in self.running or self.running[name].poll() is not None:
                self.running[name] = self._start(pod)

    def _start(self, pod: dict[str, Any]) -> subprocess.Popen[bytes]:
        (container,) = pod["spec"]["containers"]
        env = self.environment(pod, container)
        env["KUBECONFIG"] = str(self._kubeconfig(pod))
        with open(self.folder / f"{pod['metadata']['name']}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "shard_operator.cli", *container["args"]],
                                    env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The container's env as the kubelet resolves it, with the pod network's two mappings."""
        resolved: dict[str, str] = {}
        for entry in container.get("env", []):
            if "value" in entry:
                value = _REFERENCE.sub(lambda m: resolved.get(m[1], m[0]), entry["value"])
            else:
                value = self._value_from(pod, entry["valueFrom"])
            resolved[entry["name"]] = value
        for service, local in self.hosts.items():
            for name, value in resolved.items():
                resolved[name] = value.replace(f"@{service}", f"@{local}")
        if resolved.get("SHARD_OPERATOR_METRICS_ADDRESS", "").startswith(":"):
            resolved["SHARD_OPERATOR_METRICS_ADDRESS"] = f"127.0.0.1:{free_port()}"
        return resolved

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

    def _stop(self, name: str) -> None:
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def close(self) -> None:
        for name in list(self.running):
            self._stop(name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.folder.glob("*.log")))
