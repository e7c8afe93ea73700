"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager,
built from the upstream Go modules shipped in ``controlplane_src/`` (see :mod:`.binaries`).

The API server runs with RBAC authorization, client-certificate authentication (an admin
in ``system:masters``), service-account token signing, and no admission plugin that needs
a controller. The controller manager runs the garbage collector, the namespace controller and
the StatefulSet controller as the admin, so owner references cascade, deleted namespaces finish
terminating and a StatefulSet's pod objects are created and deleted as in a real cluster.
:attr:`ControlPlane.kubeconfig` is a kubeconfig file for the admin.

``kubernetes_version`` picks the release (see :func:`~.binaries.kubernetes_version`: 1.34 by default,
1.37, or ``$SHARD_OPERATOR_KUBERNETES_VERSION``). From 1.36 on the API server runs with the alpha
feature gate ``ShardedListAndWatch`` on, so lists and watches honour ``shardSelector``
(:attr:`ControlPlane.sharded_list_and_watch`).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from shard_operator.errors import TestEnvError
from shard_operator.testing.binaries import VERSION_VARIABLE, controlplane_binary
from shard_operator.testing.binaries import kubernetes_version as _kubernetes_version
from shard_operator.testing.certs import ControlPlaneCerts, write_certs
from shard_operator.testing.process import ManagedProcess, free_port, wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ControlPlane"]

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


# The controllers of kube-controller-manager that a test cluster needs: cascading deletion by
# owner references, namespaces that finish terminating (their content deleted first), and
# StatefulSets that create and delete their pods (which stay Pending: there is no scheduler or kubelet).
CONTROLLERS = ("garbagecollector", "namespace", "statefulset")

# The first minor whose API server has server-side sharded list and watch (KEP-5866, alpha).
SHARDED_LIST_AND_WATCH_SINCE = (1, 36)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in a temporary folder; use as a context manager.

    ``start_timeout`` bounds each server's wait for readiness (a cold API server on two
    cores needs 10-30 s). ``apiserver_flags`` are appended to the API server's flags (a later
    flag wins, e.g. ``["--max-requests-inflight=5"]``). ``controllers`` names the controllers of
    kube-controller-manager to run; an empty tuple runs no controller manager at all.
    ``kubernetes_version`` ("1.34", "1.37"; default ``$SHARD_OPERATOR_KUBERNETES_VERSION``, else 1.34)
    picks the binaries (:class:`ConfigError` if unsupported); when it was chosen (argument or variable),
    :meth:`start` checks that the API server reports that minor and raises :class:`TestEnvError` otherwise.
    """

    def __init__(self, *, workdir: Path | None = None, start_timeout: float = 120.0,
                 apiserver_flags: Sequence[str] = (), controllers: Sequence[str] = CONTROLLERS,
                 kubernetes_version: str | None = None) -> None:
        self._version_chosen = bool(kubernetes_version or os.environ.get(VERSION_VARIABLE))
        self.kubernetes_version = _kubernetes_version(kubernetes_version)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="shard-operator-cp-"))
        self._start_timeout = start_timeout
        self._apiserver_flags = list(apiserver_flags)
        self._controllers = list(controllers)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.controller_manager_port = free_port()
        self._certs: ControlPlaneCerts | None = None
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._controller_manager: ManagedProcess | None = None

    # -- addresses -----------------------------------------------------------------

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def certs(self) -> ControlPlaneCerts:
        if self._certs is None:
            raise TestEnvError("the control plane is not started")
        return self._certs

    @property
    def sharded_list_and_watch(self) -> bool:
        """Whether the API server runs with ``ShardedListAndWatch`` on (Kubernetes >= 1.36)."""
        major, minor = (int(part) for part in self.kubernetes_version.split("."))
        return (major, minor) >= SHARDED_LIST_AND_WATCH_SINCE

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running server processes, by name."""
        return {proc.name: proc.pid for proc in (self._etcd, self._apiserver, self._controller_manager)
                if proc is not None and proc.pid is not None}

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> ControlPlane:
        try:
            self._certs = write_certs(self.workdir / "pki")
            self._start_etcd()
            self._write_kubeconfig()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the controller manager, the API server, then etcd, and remove the temporary folder. Idempotent."""
        self.stop_apiserver()
        if self._etcd is not None:
            self._etcd.stop()
            self._etcd = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop the API server (etcd keeps the data), e.g. to test informer resumption.

        The controller manager stops with it and :meth:`start_apiserver` starts it again, so that
        its garbage collector starts from fresh discovery and informers, as after a cluster restart.
        """
        if self._controller_manager is not None:
            self._controller_manager.stop()
            self._controller_manager = None
        if self._apiserver is not None:
            self._apiserver.stop()
            self._apiserver = None

    def start_apiserver(self) -> None:
        """Start the API server on its fixed port, wait for ``/readyz``, then (re)start the controller manager."""
        argv = self.apiserver_argv()
        self._apiserver = ManagedProcess("kube-apiserver", argv, self.workdir / "kube-apiserver.log",
                                         env=_child_env())
        self._apiserver.start()
        wait_until(self._apiserver_ready, timeout=self._start_timeout, what="kube-apiserver /readyz",
                   interval=0.25, alive=self._apiserver.raise_if_exited)
        if self._version_chosen:
            self._check_version()
        if self._controllers:
            self._start_controller_manager()

    def _check_version(self) -> None:
        """Raise :class:`TestEnvError` unless the API server is of :attr:`kubernetes_version`."""
        served = json.loads(self.get_raw("/version"))
        if f"{served.get('major')}.{served.get('minor')}".rstrip("+") != self.kubernetes_version:
            binary = controlplane_binary("kube-apiserver", self.kubernetes_version)
            raise TestEnvError(f"asked for Kubernetes {self.kubernetes_version}, but {binary} is "
                               f"{served.get('gitVersion')}")

    def apiserver_argv(self) -> list[str]:
        """The API server's command line: the test defaults (with ``ShardedListAndWatch`` on from 1.36),
        then ``apiserver_flags``."""
        certs = self.certs
        gates = ["--feature-gates=ShardedListAndWatch=true"] if self.sharded_list_and_watch else []
        return [
            str(controlplane_binary("kube-apiserver", self.kubernetes_version)),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={certs.serving_cert}",
            f"--tls-private-key-file={certs.serving_key}",
            f"--client-ca-file={certs.ca_cert}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs.sa_public}",
            f"--service-account-signing-key-file={certs.sa_private}",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            *gates,
            *self._apiserver_flags,
        ]

    def controller_manager_argv(self) -> list[str]:
        """kube-controller-manager as the admin (no per-controller service accounts), no leader election."""
        return [
            str(controlplane_binary("kube-controller-manager", self.kubernetes_version)),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--controllers={','.join(self._controllers)}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.controller_manager_port}",
            f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            "--authentication-skip-lookup=true",  # no requestheader CA in this cluster: do not look for one
            # Garbage collection and namespace deletion react within a second instead of 30 s.
            "--concurrent-gc-syncs=5",
            "--concurrent-namespace-syncs=5",
            "--namespace-sync-period=10s",
        ]

    def _start_controller_manager(self) -> None:
        self._controller_manager = ManagedProcess(
            "kube-controller-manager", self.controller_manager_argv(),
            self.workdir / "kube-controller-manager.log", env=_child_env())
        self._controller_manager.start()
        wait_until(self._controller_manager_healthy, timeout=self._start_timeout,
                   what="kube-controller-manager /healthz", interval=0.25,
                   alive=self._controller_manager.raise_if_exited)

    def _start_etcd(self) -> None:
        argv = [
            str(controlplane_binary("etcd", self.kubernetes_version)),
            "--name=testenv",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-cluster=testenv=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        self._etcd = ManagedProcess("etcd", argv, self.workdir / "etcd.log", env=_child_env())
        self._etcd.start()
        wait_until(self._etcd_healthy, timeout=self._start_timeout, what="etcd /health",
                   alive=self._etcd.raise_if_exited)

    # -- probes --------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
            return b'"true"' in response.read()

    def admin_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the test CA and presents the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        context.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        return context

    def get_raw(self, path: str, timeout: float = 5.0) -> bytes:
        """GET ``path`` from the API server as the admin and return the body (e.g. ``/metrics``)."""
        request = urllib.request.Request(self.server_url + path)
        with urllib.request.urlopen(request, timeout=timeout, context=self.admin_ssl_context()) as response:
            return bytes(response.read())

    def _apiserver_ready(self) -> bool:
        return self.get_raw("/readyz", timeout=2) == b"ok"

    def _controller_manager_healthy(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # its serving certificate is self-signed at start-up
        url = f"https://127.0.0.1:{self.controller_manager_port}/healthz"
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bytes(response.read()) == b"ok"

    # -- clients -------------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        certs = self.certs
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": {
                "server": self.server_url, "certificate-authority": str(certs.ca_cert)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(certs.admin_cert), "client-key": str(certs.admin_key)}}],
            "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "admin"}}],
            "current-context": "testenv",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def api_client(self, **configuration: Any) -> ApiClient:
        """A new admin ``kubernetes.client.ApiClient`` (close it, or use it as a context manager)."""
        from kubernetes import client, config

        conf = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=conf)
        for key, value in configuration.items():
            setattr(conf, key, value)
        return client.ApiClient(conf)

    def token_client(self, token: str) -> ApiClient:
        """An ``ApiClient`` that authenticates with a bearer token (e.g. a service account's)."""
        from kubernetes import client

        conf = client.Configuration()
        conf.host = self.server_url
        conf.ssl_ca_cert = str(self.certs.ca_cert)
        conf.api_key = {"authorization": token}
        conf.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(conf)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _child_env() -> dict[str, str]:
    """The environment of the servers: ours, without proxies that would capture loopback traffic."""
    env = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    return env
