"""Job worker processes: N rq workers on shard-operator's queues, supervised and restarted.

Where it sits: the manager starts one :class:`JobWorkerPool` per pod (``--job-workers N``) beside
the reconcile workers, and calls :meth:`JobWorkerPool.supervise` periodically (or runs
:meth:`JobWorkerPool.run_supervisor` in a thread). Each child creates its own Redis clients,
keeps its liveness key alive (see :mod:`.sweeping`) and runs a :class:`~.running.JobWorker`. A
child that dies has its started jobs swept at once (retried or failed, keys reconciled again) and
is restarted with exponential backoff; every ``sweep_interval`` the supervisor also sweeps jobs
abandoned by workers of other pods and updates the queue-depth metric.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import multiprocess
import redis

from shard_operator import metrics as core_metrics
from shard_operator.jobs.naming import DEFAULT_QUEUE
from shard_operator.jobs.registry import TaskRegistry, default_registry
from shard_operator.jobs.sweeping import sweep_abandoned, update_queue_depth
from shard_operator.keys import alive_key
from shard_operator.supervision import RestartPolicy

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


def run_job_worker(spec: JobWorkerSpec, registry: TaskRegistry) -> None:
    """The body of a job worker process: run jobs until SIGTERM (warm: the current job finishes)."""
    from rq import Queue

    from shard_operator.jobs.running import JobWorker, use_registry
    from shard_operator.jobs.serialization import JSONSerializer

    use_registry(registry)
    client = redis.Redis.from_url(spec.redis_url, **spec.redis_options)
    beat_client = redis.Redis.from_url(spec.redis_url, socket_timeout=max(spec.alive_ttl / 3, 1.0),
                                       **spec.redis_options)
    stop = threading.Event()
    interval, ttl_ms = spec.alive_ttl / 3.0, int(spec.alive_ttl * 1000)

    def beat() -> None:
        while not stop.is_set():
            try:
                beat_client.set(alive_key(spec.name), "1", px=ttl_ms)
            except redis.RedisError as exc:
                log.warning("job worker %s could not renew its liveness key: %s", spec.name, exc)
            stop.wait(interval)

    beat_client.set(alive_key(spec.name), "1", px=ttl_ms)  # alive before the first job can start
    beater = threading.Thread(target=beat, name="job-worker-alive", daemon=True)
    beater.start()
    try:
        queues = [Queue(name, connection=client, serializer=JSONSerializer) for name in spec.queues]
        JobWorker(queues, connection=client, name=spec.name).work(logging_level=spec.logging_level)
    finally:
        stop.set()
        beater.join(timeout=2)
        with contextlib.suppress(redis.RedisError):
            beat_client.delete(alive_key(spec.name))
        client.close()
        beat_client.close()


def _child_main(spec: JobWorkerSpec, registry: TaskRegistry) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    run_job_worker(spec, registry)


@dataclass
class _Slot:
    index: int
    spec: JobWorkerSpec | None = None
    process: Any = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0


class JobWorkerPool:
    """``n`` job worker processes on ``queues``; dead ones are swept and restarted.

    ``alive_ttl`` and ``sweep_interval`` bound how long a job abandoned by a dead worker of another
    pod stays "started" (see :mod:`.sweeping`). Restart backoff doubles from ``restart_backoff`` up to
    ``max_restart_backoff`` and resets once a child has run ``stable_after`` seconds. Tasks come from
    ``registry`` (default: :data:`~shard_operator.jobs.registry.default_registry`) as it is when the
    children fork.
    """

    def __init__(self, n: int, redis_url: str, queues: list[str] | tuple[str, ...] = (DEFAULT_QUEUE,), *,
                 registry: TaskRegistry | None = None, alive_ttl: float = 10.0, sweep_interval: float = 5.0,
                 restart_backoff: float = 1.0, max_restart_backoff: float = 30.0, stable_after: float = 60.0,
                 logging_level: str = "WARNING", redis_options: dict[str, Any] | None = None,
                 name_prefix: str | None = None) -> None:
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
        self._slots = [_Slot(i) for i in range(n)]
        self._ctx = multiprocess.get_context("fork")
        self._stopping = threading.Event()
        self._client: redis.Redis | None = None
        self._last_sweep = 0.0

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, **self.redis_options)
        return self._client

    @property
    def pids(self) -> dict[str, int]:
        """Worker name → pid of the live children."""
        return {slot.spec.name: slot.process.pid for slot in self._slots
                if slot.spec is not None and slot.process is not None and slot.process.is_alive()}

    def start(self) -> None:
        self._stopping.clear()
        for slot in self._slots:
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.spec = JobWorkerSpec(name=f"{self.name_prefix}.{slot.index}.{uuid.uuid4().hex[:8]}",
                                  redis_url=self.redis_url, queues=self.queues, alive_ttl=self.alive_ttl,
                                  logging_level=self.logging_level, redis_options=self.redis_options)
        slot.process = self._ctx.Process(target=_child_main, args=(slot.spec, self.registry),
                                         name=f"job-worker-{slot.index}", daemon=False)
        slot.process.start()
        slot.started_at = time.monotonic()

    def supervise(self) -> list[str]:
        """Sweep dead children's jobs and restart them after their backoff; sweep every ``sweep_interval``.

        Returns the names of the workers that died since the last call.
        """
        died: list[str] = []
        now = time.monotonic()
        for slot in self._slots:
            if self._stopping.is_set() or slot.process is None or slot.process.is_alive():
                continue
            if slot.next_start == 0.0:
                assert slot.spec is not None
                died.append(slot.spec.name)
                core_metrics.mark_process_dead(slot.process.pid)
                self.restart_policy.schedule(slot, now)
                log.warning("job worker %s exited with %s; restart in %.1fs", slot.spec.name, slot.process.exitcode,
                            slot.next_start - now)
        if died or now - self._last_sweep >= self.sweep_interval:
            self.sweep(dead_workers=died)
        for slot in self._slots:
            if (not self._stopping.is_set() and slot.next_start and now >= slot.next_start
                    and not slot.process.is_alive()):
                slot.next_start = 0.0
                self._start(slot)
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
        while not self._stopping.wait(interval):
            self.supervise()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every child (it finishes its current job), kill those left after ``timeout``, sweep."""
        self._stopping.set()
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                slot.process.terminate()
        deadline = time.monotonic() + timeout
        names = []
        for slot in self._slots:
            if slot.process is None:
                continue
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.warning("job worker %s did not stop in %.0fs; killing it", slot.index, timeout)
                slot.process.kill()
                slot.process.join(5)
            core_metrics.mark_process_dead(slot.process.pid)
            if slot.spec is not None:
                names.append(slot.spec.name)
        self.sweep(dead_workers=names)
        if self._client is not None:
            self._client.close()
            self._client = None
