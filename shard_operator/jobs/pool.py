"""Job worker processes: N rq workers on shard-operator's queues, run by the shared supervised pool.

Where it sits: the manager starts one :class:`JobWorkerPool` per pod (``--job-workers N``) beside
the reconcile workers, and calls :meth:`JobWorkerPool.supervise` periodically (or runs
:meth:`JobWorkerPool.run_supervisor` in a thread). The pool is a thin user of
:class:`~shard_operator.supervision.ProcessPool`, which forks, restarts with backoff, stops (SIGTERM:
rq's warm shutdown, the current job finishes) and gives every child the parent-death check, so job
workers end with a SIGKILLed manager. Each child creates its own Redis clients, keeps its liveness
key alive (see :mod:`.sweeping`) and runs a :class:`~.running.JobWorker`. A child that dies has its
started jobs swept at once (retried or failed, keys reconciled again); every ``sweep_interval`` the
supervisor also sweeps jobs abandoned by workers of other pods and updates the queue-depth metric.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from shard_operator import logs
from shard_operator.errors import StorageError
from shard_operator.jobs.registry import TaskRegistry, default_registry
from shard_operator.jobs.sweeping import sweep_abandoned, update_queue_depth
from shard_operator.keys import DEFAULT_QUEUE, alive_key
from shard_operator.storage import connect, redis_errors
from shard_operator.supervision import Child, Exit, ProcessPool, RestartPolicy

__all__ = ["JobWorkerPool", "JobWorkerSpec", "run_job_worker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobWorkerSpec:
    """Everything one job worker process needs."""

    name: str
    redis_url: str
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    alive_ttl: float = 10.0
    logging_level: str = "WARNING"
    redis_options: dict[str, Any] = field(default_factory=dict)
    controller: str | None = None  # named on every log line of the process


def run_job_worker(spec: JobWorkerSpec, registry: TaskRegistry, stop: threading.Event | None = None) -> None:
    """The body of a job worker process: run jobs until SIGTERM (warm: the current job finishes).

    ``stop`` already set (a SIGTERM that came before rq installed its handlers) stops it before the
    first job.
    """
    from rq import Queue

    from shard_operator.jobs.running import JobWorker, use_registry
    from shard_operator.jobs.serialization import JSONSerializer

    use_registry(registry)
    client = connect(spec.redis_url, **spec.redis_options)
    beat_client = connect(spec.redis_url, socket_timeout=max(spec.alive_ttl / 3, 1.0), **spec.redis_options)
    beating = threading.Event()
    interval, ttl_ms = spec.alive_ttl / 3.0, int(spec.alive_ttl * 1000)

    def beat() -> None:
        while not beating.is_set():
            try:
                with redis_errors():
                    beat_client.set(alive_key(spec.name), "1", px=ttl_ms)
            except StorageError as exc:
                log.warning("job worker %s could not renew its liveness key: %s", spec.name, exc)
            beating.wait(interval)

    with redis_errors():
        beat_client.set(alive_key(spec.name), "1", px=ttl_ms)  # alive before the first job can start
    beater = threading.Thread(target=beat, name="job-worker-alive", daemon=True)
    beater.start()
    log.info("job worker %s serving %s", spec.name, ", ".join(spec.queues))
    try:
        queues = [Queue(name, connection=client, serializer=JSONSerializer) for name in spec.queues]
        JobWorker(queues, connection=client, name=spec.name, stop=stop).work(logging_level=spec.logging_level)
    finally:
        beating.set()
        beater.join(timeout=2)
        with contextlib.suppress(StorageError), redis_errors():
            beat_client.delete(alive_key(spec.name))
        client.close()
        beat_client.close()


def _job_worker_main(stop: threading.Event, spec: JobWorkerSpec, registry: TaskRegistry) -> None:
    logs.set_process("job-worker", spec.name, controller=spec.controller)
    run_job_worker(spec, registry, stop)


class JobWorkerPool:
    """``n`` job worker processes on ``queues``; dead ones are swept and restarted.

    ``alive_ttl`` and ``sweep_interval`` bound how long a job abandoned by a dead worker of another
    pod stays "started" (see :mod:`.sweeping`). Restart backoff doubles from ``restart_backoff`` up to
    ``max_restart_backoff`` and resets once a child has run ``stable_after`` seconds. Tasks come from
    ``registry`` (default: :data:`~shard_operator.jobs.registry.default_registry`) as it is when the
    children fork. Each (re)start gets a fresh worker name (``<name_prefix>.<slot>.<random>``); ``controller``
    is named on every log line of the children.
    """

    def __init__(self, n: int, redis_url: str, queues: list[str] | tuple[str, ...] = (DEFAULT_QUEUE,), *,
                 registry: TaskRegistry | None = None, alive_ttl: float = 10.0, sweep_interval: float = 5.0,
                 restart_backoff: float = 1.0, max_restart_backoff: float = 30.0, stable_after: float = 5.0,
                 logging_level: str = "WARNING", redis_options: dict[str, Any] | None = None,
                 name_prefix: str | None = None, controller: str | None = None) -> None:
        if n < 1 or not queues:
            raise ValueError("a job worker pool needs n >= 1 and at least one queue")
        if alive_ttl <= 0 or sweep_interval <= 0:
            raise ValueError("alive_ttl and sweep_interval must be > 0")
        self.redis_url, self.queues = redis_url, tuple(queues)
        self.registry = registry or default_registry
        self.alive_ttl, self.sweep_interval = alive_ttl, sweep_interval
        self.restart_policy = RestartPolicy(restart_backoff, max_restart_backoff, stable_after)
        self.logging_level, self.redis_options = logging_level, dict(redis_options or {})
        self.name_prefix = name_prefix or f"so-jobs.{socket.gethostname()}"
        self.controller = controller
        self._pool = ProcessPool(n, self._child, policy=self.restart_policy, on_exit=self._exited)
        self._client: redis.Redis | None = None
        self._last_sweep = 0.0

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            # Timeouts: the manager's supervision loop sweeps through this client, and a hung Redis must
            # not stop it from restarting dead children.
            options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 3.0}
            self._client = connect(self.redis_url, **{**options, **self.redis_options})
        return self._client

    @property
    def pids(self) -> dict[str, int]:
        """Worker name → pid of the live children."""
        return self._pool.pids

    def start(self) -> None:
        self._pool.start()

    def supervise(self) -> list[str]:
        """Sweep dead children's jobs and restart them after their backoff; sweep every ``sweep_interval``.

        Returns the names of the workers that died since the last call.
        """
        died = [exit.child.args[0].name for exit in self._pool.supervise()]
        if not died and time.monotonic() - self._last_sweep >= self.sweep_interval:
            self.sweep()
        return died

    def sweep(self, dead_workers: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Retry or fail abandoned jobs now (see :mod:`.sweeping`); returns their ids. Never raises."""
        self._last_sweep = time.monotonic()
        try:
            swept = sweep_abandoned(self.client, self.queues, dead_workers=dead_workers)
            update_queue_depth(self.client, self.queues)
            return swept
        except Exception as exc:  # a Redis outage must not end supervision; the next sweep retries
            log.warning("sweeping abandoned jobs failed: %s", exc)
            return []

    def run_supervisor(self, interval: float = 0.5) -> None:
        self._pool.run_supervisor(interval)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every child (it finishes its current job), kill those left after ``timeout``, sweep."""
        self._pool.stop(timeout)
        if self._client is not None:
            self._client.close()
            self._client = None

    def _child(self, index: int) -> Child:
        spec = JobWorkerSpec(name=f"{self.name_prefix}.{index}.{uuid.uuid4().hex[:8]}", redis_url=self.redis_url,
                             queues=self.queues, alive_ttl=self.alive_ttl, logging_level=self.logging_level,
                             redis_options=self.redis_options, controller=self.controller)
        return Child(f"job-worker-{index}", _job_worker_main, (spec, self.registry))

    def _exited(self, exits: list[Exit]) -> None:
        self.sweep(dead_workers=[exit.child.args[0].name for exit in exits])
