"""The manager: one per pod. It supervises the leader candidate, the worker processes and the
health server, and shuts them down in order (docs/design.md §2.10).

Start-up has two phases. Preparing does everything a bad configuration can break, quietly and before
any process or thread exists: bind the health server's socket (a busy port), reach Redis, load the
kubeconfig, switch metrics to multiprocess mode, build the leader elector (the Lease's timings) and the
worker pools. A failure there is a one-line ConfigError and leaves nothing behind. Starting then forks
the W worker processes (before any thread of ours exists) and the job workers, and starts the health
server's threads and the leader candidate. While leading, :class:`~.leading.LeaderRunner` runs the
informers and the coordinator; with ``--sharded-ingest`` every manager also runs its
:class:`~.ingesting.IngestRunner`. The supervision loop restarts dead children; a readiness thread keeps
the state that ``/readyz`` reports, so a probe never waits on Redis. Shutdown (SIGTERM, SIGINT or
:meth:`Manager.stop`): stop leading and hand the Lease over at once, then let every worker finish its
in-flight keys and leave the shard ring.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shard_operator import metrics
from shard_operator.cache.scope import Selectors
from shard_operator.config import Config, redact_url
from shard_operator.errors import ConfigError, StorageError
from shard_operator.jobs import JobWorkerPool, default_registry
from shard_operator.keys import Keys, controller_queue
from shard_operator.leaderelection import LeaderElector
from shard_operator.manager.context import WorkerContextFactory
from shard_operator.manager.health import HealthServer
from shard_operator.manager.ingesting import IngestRunner
from shard_operator.manager.leading import LeaderRunner
from shard_operator.queue import TokenBucket
from shard_operator.storage import connect, redis_errors
from shard_operator.worker.pool import WorkerPool, WorkerSpec

if TYPE_CHECKING:
    import redis
    from kubernetes.client import ApiClient

    from shard_operator.operator import Operator

__all__ = ["Manager", "connect_api", "connect_redis"]

log = logging.getLogger(__name__)

#: /readyz: how often the readiness thread re-reads the ring, how long that read may take, and after how
#: long without a refresh the state itself is no longer trusted.
READINESS_INTERVAL = 1.0
READINESS_TIMEOUT = 1.0
READINESS_STALE = 10.0


def connect_redis(url: str) -> redis.Redis:
    """A Redis client that answered PING; ConfigError (one line) when the URL is bad or unreachable."""
    try:
        client = connect(url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)
        with redis_errors():
            client.ping()
    except (StorageError, ValueError, OSError) as exc:
        raise ConfigError(redact_url(f"cannot reach Redis at {url}: {_cause(exc)}")) from None
    return client


def _cause(exc: Exception) -> str:
    """What went wrong, without StorageError's ``redis:`` prefix (the message names Redis already)."""
    return str(exc).removeprefix("redis: ")


def connect_api(kubeconfig: str | None) -> ApiClient:
    """An ApiClient from ``kubeconfig`` ($KUBECONFIG, ~/.kube/config, in-cluster); ConfigError if none loads."""
    from shard_operator.kube import load_api_client

    try:
        return load_api_client(kubeconfig)
    except Exception as exc:  # kubernetes.config.ConfigException, a missing or malformed file
        where = kubeconfig or "$KUBECONFIG, ~/.kube/config or the in-cluster service account"
        message = f"cannot load a Kubernetes configuration from {where}: {exc}".replace("\n", " ")
        raise ConfigError(redact_url(message)) from None


class Manager:
    """Runs one operator in this pod until stopped; see the module docstring for the order of things.

    ``ready()`` is true once every worker of this pod is in the published shard ring and, while this pod
    leads, every informer has listed its resource. ``healthy()`` is false once the supervision loop stalls.
    """

    def __init__(self, operator: Operator, config: Config) -> None:
        self.operator, self.config = operator, config.validate()
        self._stop = threading.Event()
        self._keys = Keys.for_controller(operator.name)
        self._redis: redis.Redis | None = None
        self._probe: redis.Redis | None = None  # short timeouts: the readiness reads
        self._api: ApiClient | None = None
        self._pool: WorkerPool | None = None
        self._jobs: JobWorkerPool | None = None
        self._runner: LeaderRunner | None = None
        self._ingest: IngestRunner | None = None
        self._elector: LeaderElector | None = None
        self._health: HealthServer | None = None
        self._last_loop = time.monotonic()
        self._readiness: tuple[bool, str, float] = (False, "starting", time.monotonic())
        self._own_metrics_dir: Path | None = None

    # -- probes ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._elector is not None and self._elector.is_leader

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health is not None else None

    def healthy(self) -> tuple[bool, str]:
        stalled = time.monotonic() - self._last_loop
        if stalled > 30:
            return False, f"the supervision loop has not run for {stalled:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """The state the readiness thread last found (never waits on Redis); stale state is "not ready"."""
        if self._stop.is_set():
            return False, "stopping"
        ok, reason, checked = self._readiness
        age = time.monotonic() - checked
        if age > READINESS_STALE:
            return False, f"readiness not checked for {age:.0f}s"
        return ok, reason

    def _readiness_loop(self) -> None:
        # Its own thread: the supervision loop may wait on Redis (the job pool's sweeps) while it hangs.
        while not self._stop.is_set():
            ok, reason = self._check_readiness()
            self._readiness = (ok, reason, time.monotonic())
            self._stop.wait(READINESS_INTERVAL)

    def _check_readiness(self) -> tuple[bool, str]:
        if self._probe is None:
            return False, "not running"
        redis_up = metrics.REDIS_UP.labels(self.operator.name)
        try:
            with redis_errors():
                ring = {shard.decode() for shard in self._probe.lrange(self._keys.ring, 0, -1)}
        except (StorageError, OSError) as exc:
            redis_up.set(0)
            return False, redact_url(f"Redis does not answer: {_cause(exc)}")
        redis_up.set(1)
        missing = [shard for shard in self.config.shard_ids if shard not in ring]
        if missing:
            return False, f"workers not in the shard ring: {', '.join(missing)}"
        if self.is_leader and self._runner is not None and not self._runner.has_synced:
            return False, "leader: informer caches not synced"
        return True, "ok (leader)" if self.is_leader else "ok"

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (what SIGTERM does)."""
        self._stop.set()

    def run(self) -> int:
        """Run until stopped; returns the process exit code (0 after a clean shutdown).

        Raises ConfigError, with nothing left running, when preparing finds a bad configuration.
        """
        try:
            self._prepare()
        except BaseException:
            self._close_prepared()
            raise
        self._install_signal_handlers()
        try:
            self._start()
            assert self._pool is not None
            while not self._stop.wait(0.25):
                self._last_loop = time.monotonic()
                self._pool.supervise()
                if self._jobs is not None:
                    self._jobs.supervise()
        finally:
            self._shutdown()
        return 0

    def _prepare(self) -> None:
        """Everything a bad configuration can break; no process, thread or log line yet."""
        config, operator = self.config, self.operator
        address = config.metrics_host_port()
        if address is not None:
            try:
                self._health = HealthServer(*address, healthy=self.healthy, ready=self.ready)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise ConfigError(f"--metrics-address {config.metrics_address}: cannot listen on "
                                  f"{address[0]}:{address[1]}: {reason}") from None
        self._redis = connect_redis(config.redis_url)
        self._probe = connect(config.redis_url, socket_connect_timeout=READINESS_TIMEOUT,
                              socket_timeout=READINESS_TIMEOUT)
        self._api = connect_api(config.kubeconfig)
        folder = Path(config.metrics_dir or tempfile.mkdtemp(prefix="shard-operator-metrics-"))
        self._own_metrics_dir = folder if config.metrics_dir is None else None
        try:
            metrics.enable_multiprocess(folder)
        except OSError as exc:
            raise ConfigError(f"--metrics-dir {folder}: {exc.strerror or exc}") from None
        self._runner = LeaderRunner(operator, config, self._api, self._redis)
        if config.sharded_ingest:
            self._ingest = IngestRunner(operator, config, self._api, self._redis)
            self._ingest.check_supported()  # ConfigError on a server without sharded list and watch
        lease_namespace, lease_name = config.lease(operator.name)
        leader_status = metrics.LEADER_STATUS.labels(operator.name)
        self._elector = LeaderElector(  # checks the Lease's timings again (ConfigError)
            self._api, namespace=lease_namespace, name=lease_name, identity=config.pod_name,
            lease_duration=config.lease_duration, renew_deadline=config.renew_deadline,
            retry_period=config.retry_period, on_started_leading=self._runner.start,
            on_stopped_leading=self._runner.stop, on_status=lambda leading: leader_status.set(int(leading)),
            on_new_leader=lambda identity: log.info("leader of %s is %s", operator.name, identity))
        self._pool = WorkerPool(self._specs(), operator.reconcile, restart_backoff=config.restart_backoff)
        job_workers = config.job_workers if config.job_workers is not None else int(bool(default_registry.names()))
        if job_workers:
            self._jobs = JobWorkerPool(job_workers, config.redis_url, [controller_queue(operator.name)],
                                       registry=default_registry, restart_backoff=config.restart_backoff,
                                       name_prefix=f"{config.pod_name}-jobs", controller=operator.name)

    def _start(self) -> None:
        config = self.config
        assert self._pool is not None and self._elector is not None
        self._pool.start()  # fork first: no thread of ours exists yet
        if self._jobs is not None:
            self._jobs.start()
        if self._health is not None:
            self._health.start()
            log.info("serving /healthz, /readyz and /metrics on %s", config.metrics_address)
        threading.Thread(target=self._readiness_loop, name="readiness", daemon=True).start()
        self._elector.start()
        if self._ingest is not None:
            self._ingest.start()
        lease_namespace, lease_name = config.lease(self.operator.name)
        log.info("manager %s started: %d worker(s) %s, lease %s/%s", config.pod_name, config.workers,
                 ", ".join(config.shard_ids), lease_namespace, lease_name)

    def _close_prepared(self) -> None:
        """Undo :meth:`_prepare` after a failure: close sockets and clients, remove our metrics folder."""
        if self._health is not None:
            self._health.close()
        for closing in (self._redis, self._probe, self._api):
            if closing is not None:
                closing.close()
        if self._own_metrics_dir is not None:
            shutil.rmtree(self._own_metrics_dir, ignore_errors=True)

    def _specs(self) -> list[WorkerSpec]:
        config, operator = self.config, self.operator
        bucket = TokenBucket(qps=config.qps, burst=config.burst) if config.qps > 0 else None
        factory = WorkerContextFactory(operator.name, operator.resource, config.kubeconfig, config.pod_name,
                                       job_queue=controller_queue(operator.name), job_timeout=config.job_timeout)
        # the leader's rules (LeaderRunner._namespaces, _selectors): the flag, else the operator's own
        namespaces = config.namespaces if config.namespaces is not None else operator.namespaces
        return [WorkerSpec(controller=operator.name, shard=shard, redis_url=config.redis_url,
                           threads=config.threads, batch=config.claim_batch, claim_ttl=config.claim_ttl,
                           heartbeat_interval=config.heartbeat_interval, bucket=bucket, context_factory=factory,
                           redis_options={"max_connections": config.redis_max_connections},
                           namespaces=None if namespaces is None else tuple(namespaces),
                           selectors=Selectors.of(config.label_selector or operator.label_selector,
                                                  config.field_selector or operator.field_selector))
                for shard in config.shard_ids]

    def _shutdown(self) -> None:
        started = time.monotonic()
        log.info("manager %s stopping: handing over the lease, draining workers", self.config.pod_name)
        if self._elector is not None:
            self._elector.release(timeout=self.config.renew_deadline + 2)  # stops the informers first
        if self._runner is not None:
            self._runner.stop()
        if self._ingest is not None:
            self._ingest.stop()
        if self._pool is not None:
            self._pool.stop(timeout=self.config.drain_timeout)
        if self._jobs is not None:
            # A job cut short here is found abandoned by a sweep and retried or failed (docs/design.md §2.8).
            self._jobs.stop(timeout=self.config.drain_timeout)
        if self._health is not None:
            self._health.stop()
        for closing in (self._redis, self._probe, self._api):
            if closing is not None:
                closing.close()
        if self._own_metrics_dir is not None:  # a temporary folder of this run's metrics files
            shutil.rmtree(self._own_metrics_dir, ignore_errors=True)
        log.info("manager %s stopped in %.1fs", self.config.pod_name, time.monotonic() - started)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, _frame: Any) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
