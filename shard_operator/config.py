"""The manager's configuration: every option of ``shard-operator run``, validated in one place.

The command line (:mod:`shard_operator.cli`) fills a :class:`Config` from flags, falling back to
``SHARD_OPERATOR_<OPTION>`` environment variables, then to these defaults. :meth:`Config.validate`
raises :class:`~shard_operator.errors.ConfigError` with one line naming the bad value, so a bad
deployment fails at start with a clear reason instead of a traceback.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from shard_operator.errors import ConfigError
from shard_operator.keys import validate_shard_id

__all__ = ["ENV_PREFIX", "Config", "in_cluster_namespace"]

ENV_PREFIX = "SHARD_OPERATOR_"
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def in_cluster_namespace(default: str = "default") -> str:
    """The pod's namespace when running in a cluster (the service account's), else ``default``."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or default
    except OSError:
        return default


@dataclass
class Config:
    """Options of one manager (one pod). Durations are in seconds.

    ``pod_name`` names this pod: it is the leader-election identity and the prefix of its shard ids
    (``<pod_name>-w<i>``), so in a StatefulSet the ordinal names the shards. ``qps``/``burst`` are the
    global token bucket of the work queue (``qps <= 0`` disables it), shared by every worker of every pod.
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    kubeconfig: str | None = None
    workers: int = 1
    threads: int = 1
    namespaces: list[str] | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    qps: float = 10.0
    burst: int = 100
    metrics_address: str = ":8080"
    metrics_dir: str | None = None
    pod_name: str = field(default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname())
    lease_namespace: str | None = None
    lease_name: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    claim_ttl: float = 30.0
    member_ttl: float = 10.0
    heartbeat_interval: float = 2.0
    coordinate_interval: float = 0.5
    drain_timeout: float = 30.0
    restart_backoff: float = 1.0
    #: RQ job-worker processes in this pod; None: one if the operator registered any task, else none.
    job_workers: int | None = None
    job_timeout: float = 180.0

    def validate(self) -> Config:
        """Check every value; returns ``self``. Raises ConfigError naming the first bad option."""
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.job_workers is not None and self.job_workers < 0:
            raise ConfigError(f"--job-workers must be >= 0, got {self.job_workers}")
        if self.job_timeout <= 0:
            raise ConfigError(f"--job-timeout must be > 0, got {self.job_timeout}")
        if self.burst < 1:
            raise ConfigError(f"--burst must be >= 1, got {self.burst}")
        for name in ("claim_ttl", "member_ttl", "heartbeat_interval", "coordinate_interval", "drain_timeout",
                     "restart_backoff"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.heartbeat_interval >= self.member_ttl:
            raise ConfigError(f"--heartbeat-interval ({self.heartbeat_interval}s) must be shorter than "
                              f"--member-ttl ({self.member_ttl}s)")
        try:
            validate_shard_id(self.shard_ids[0])
        except ValueError:
            raise ConfigError(f"--pod-name {self.pod_name!r} cannot name shards: no braces, '|' or spaces") from None
        if self.kubeconfig is not None and not Path(self.kubeconfig).is_file():
            raise ConfigError(f"kubeconfig {self.kubeconfig} does not exist")
        self.metrics_host_port()
        if self.namespaces is not None and not self.namespaces:
            self.namespaces = None
        return self

    @property
    def shard_ids(self) -> list[str]:
        """This pod's shards, one per worker process."""
        return [f"{self.pod_name}-w{i}" for i in range(self.workers)]

    def metrics_host_port(self) -> tuple[str, int] | None:
        """``metrics_address`` as (host, port); None when it is ``0`` or empty (no HTTP server)."""
        address = self.metrics_address.strip()
        if address in ("", "0"):
            return None
        host, _, port = address.rpartition(":")
        try:
            number = int(port)
        except ValueError:
            raise ConfigError(f"--metrics-address {address!r} must be HOST:PORT or :PORT") from None
        if not 0 <= number <= 65535:
            raise ConfigError(f"--metrics-address {address!r}: port out of range")
        return host or "0.0.0.0", number

    def lease(self, controller: str) -> tuple[str, str]:
        """The Lease (namespace, name): by default ``<controller>-leader`` in the pod's namespace."""
        return self.lease_namespace or in_cluster_namespace(), self.lease_name or f"{controller}-leader"
