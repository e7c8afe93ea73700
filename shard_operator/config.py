"""The manager's configuration: every option of ``shard-operator run``, validated in one place.

The command line (:mod:`shard_operator.cli`) fills a :class:`Config` from flags, falling back to
``SHARD_OPERATOR_<OPTION>`` environment variables, then to these defaults. :meth:`Config.validate`
raises :class:`~shard_operator.errors.ConfigError` with one line naming the bad value, so a bad
deployment fails at start, before any worker process exists, with a clear reason instead of a
traceback: every number is finite and within a sane range, and the timings that depend on one another
(the Lease's, a shard's heartbeat and TTL) are checked together. :func:`redact_url` (from
:mod:`shard_operator.redaction`) keeps credentials out of every message that shows a URL.
"""

from __future__ import annotations

import math
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path

from shard_operator.errors import ConfigError
from shard_operator.keys import validate_shard_id
from shard_operator.redaction import redact_url

__all__ = ["ENV_PREFIX", "Config", "in_cluster_namespace", "redact_url", "redis_url_with_password"]

ENV_PREFIX = "SHARD_OPERATOR_"
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

#: client-go's rule: a candidate waits ``retry_period * (1 + U[0, 1.2))`` between attempts, so the renew
#: deadline must leave room for one jittered retry (the same factor as ``leaderelection.JITTER_FACTOR``).
LEASE_JITTER_FACTOR = 1.2
#: Redis connections of a worker process beyond one per reconcile thread (heartbeat, claim renewer,
#: cache reader, a fencing check): the size of its connection pool is ``threads + REDIS_SPARE_CONNECTIONS``.
REDIS_SPARE_CONNECTIONS = 8

# option -> (lowest, highest), both allowed. The limits keep a pod within Redis's default 10,000 clients
# (64 workers x (128 + 8) connections) and every timing in a range where the scripts and waits work.
_RANGES: dict[str, tuple[float, float]] = {
    "workers": (1, 64),
    "threads": (1, 128),
    "claim_batch": (1, 1024),
    "job_workers": (0, 64),
    "qps": (0, 1_000_000),
    "burst": (1, 1_000_000),
    "lease_duration": (1, 3600),
    "renew_deadline": (0.1, 3600),
    "retry_period": (0.05, 3600),
    # claims are renewed every claim_ttl / 3: below 1.5 s a key-holding thread would renew more than
    # twice a second and a Redis hiccup of half a second would lose the claim
    "claim_ttl": (1.5, 86_400),
    "member_ttl": (0.2, 3600),
    "heartbeat_interval": (0.05, 600),
    "coordinate_interval": (0.05, 60),
    "drain_timeout": (0.1, 3600),
    "restart_backoff": (0.05, 600),
    "job_timeout": (1, 7 * 86_400),
}
_WHOLE = {"workers", "threads", "claim_batch", "job_workers", "burst"}
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def in_cluster_namespace(default: str = "default") -> str:
    """The pod's namespace when running in a cluster (the service account's), else ``default``."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or default
    except OSError:
        return default


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class Config:
    """Options of one manager (one pod). Durations are in seconds.

    ``pod_name`` names this pod: it is the leader-election identity and the prefix of its shard ids
    (``<pod_name>-w<i>``), so in a StatefulSet the ordinal names the shards. ``qps``/``burst`` are the
    global token bucket of the work queue (``qps == 0`` disables it), shared by every worker of every pod.
    Its ``repr`` shows the Redis URL without credentials.
    """

    redis_url: str = "redis://127.0.0.1:6379/0"
    kubeconfig: str | None = None
    workers: int = 1
    threads: int = 1
    claim_batch: int = 1
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
    #: A file holding the Redis password (a mounted Secret): :meth:`validate` adds it to ``redis_url``, so
    #: the password is in no environment variable that the worker and job processes inherit.
    redis_password_file: str | None = None
    #: Server-side sharded ingest of the primary resource (Kubernetes >= 1.36 with ShardedListAndWatch): every
    #: pod lists and watches the uid-hash ranges the leader assigns it, instead of the leader seeing every event.
    sharded_ingest: bool = False

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return redact_url(f"Config({shown})")

    def validate(self) -> Config:
        """Check every value; returns ``self``. Raises ConfigError naming the first bad option."""
        for name, (lowest, highest) in _RANGES.items():
            self._check_range(name, lowest, highest)
        if self.lease_duration != int(self.lease_duration):
            raise ConfigError(f"--lease-duration must be a whole number of seconds, got {self.lease_duration}")
        if self.lease_duration <= self.renew_deadline:
            raise ConfigError(f"--lease-duration ({self.lease_duration:g}s) must be longer than --renew-deadline "
                              f"({self.renew_deadline:g}s): a leader must give up before its Lease expires")
        if self.renew_deadline <= LEASE_JITTER_FACTOR * self.retry_period:
            raise ConfigError(f"--renew-deadline ({self.renew_deadline:g}s) must be longer than "
                              f"{LEASE_JITTER_FACTOR} x --retry-period ({self.retry_period:g}s), "
                              "to leave room for one jittered retry")
        if self.member_ttl < 2 * self.heartbeat_interval:
            raise ConfigError(f"--heartbeat-interval ({self.heartbeat_interval:g}s) must be at most half of "
                              f"--member-ttl ({self.member_ttl:g}s): a shard must survive one missed heartbeat")
        if not self.redis_url.startswith(_REDIS_SCHEMES):
            raise ConfigError(f"--redis-url {redact_url(self.redis_url)!r} must start with "
                              f"{', '.join(_REDIS_SCHEMES)}")
        self.redis_url = redis_url_with_password(self.redis_url, self.redis_password_file)
        self.redis_password_file = None  # read once: validating again keeps the URL as it is now
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

    def _check_range(self, name: str, lowest: float, highest: float) -> None:
        value = getattr(self, name)
        if value is None and name == "job_workers":
            return
        whole = name in _WHOLE
        try:
            number = float(value)
            fits = math.isfinite(number) and lowest <= number <= highest and (not whole or number == int(number))
        except (TypeError, ValueError):
            fits = False
        if not fits:
            kind = "a whole number" if whole else "a number" if name == "qps" else "a number of seconds"
            raise ConfigError(f"{_flag(name)} must be {kind} from {lowest:g} to {highest:g}, got {value!r}")

    @property
    def redis_max_connections(self) -> int:
        """The size of each worker process's Redis connection pool: one per thread, and spares."""
        return self.threads + REDIS_SPARE_CONNECTIONS

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


def redis_url_with_password(url: str, password_file: str | None) -> str:
    """``url`` with the password read from ``password_file`` (a mounted Secret's file; one trailing newline
    is dropped), quoted for the URL; ``url`` unchanged when no file is given. Raises ConfigError when the
    file cannot be read or is empty, or when ``url`` already carries a password."""
    if not password_file:
        return url
    try:
        password = Path(password_file).read_text().removesuffix("\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--redis-password-file {password_file}: cannot read it: {reason}") from None
    if not password:
        raise ConfigError(f"--redis-password-file {password_file} is empty")
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None or re.search(r"(^|&)password=", parts.query):
        raise ConfigError(f"--redis-url {redact_url(url)!r} already has a password: give it there or in "
                          "--redis-password-file, not both")
    quoted = urllib.parse.quote(password, safe="")
    if parts.scheme == "unix":
        return f"{url}{'&' if parts.query else '?'}password={quoted}"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{quoted}@{host}"))
