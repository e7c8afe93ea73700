"""Worker processes: one shard each, started with ``multiprocess`` and supervised.

Where it sits: the manager (or a test, or the queue benchmark) builds one :class:`WorkerSpec` per
shard and hands them to a :class:`WorkerPool`. Each child creates its own Redis client (never
inherited across the fork), announces its shard with a heartbeat, and runs a
:class:`~shard_operator.worker.runner.ShardWorker`. A child that dies is restarted with exponential
backoff; its claims expire and its keys are queued again (I5). ``stop()`` asks every child to finish
its in-flight keys, leave the ring and exit; children that do not are killed after the timeout. A
child whose parent died (the manager was killed) stops the same way at its next heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiprocess

from shard_operator import metrics
from shard_operator.queue import TokenBucket
from shard_operator.supervision import RestartPolicy
from shard_operator.worker.runner import ReconcileFn

__all__ = ["WorkerPool", "WorkerSpec", "run_shard_worker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, picklable: it crosses the process boundary."""

    controller: str
    shard: str
    redis_url: str
    threads: int = 1
    claim_ttl: float = 30.0
    heartbeat_interval: float = 2.0
    get_timeout: float = 1.0
    bucket: TokenBucket | None = field(default_factory=lambda: TokenBucket(qps=10.0, burst=100))
    #: Extra keyword arguments for ``redis.Redis.from_url`` in the child (TLS options, a connection class).
    redis_options: dict[str, Any] = field(default_factory=dict)
    #: Called in the child with its Redis client; returns the context parts of :class:`~.runner.ShardWorker` (``cache``,
    #: ``client``, ``recorder``, ``resource``). The manager builds the API client here, after the fork.
    context_factory: Callable[[Any], dict[str, Any]] | None = None


def run_shard_worker(spec: WorkerSpec, reconcile: ReconcileFn, stop: Any) -> None:
    """The body of a worker process (also callable in a thread for tests): runs until ``stop`` is set."""
    import redis

    from shard_operator.keys import Keys
    from shard_operator.queue import RateLimitingQueue
    from shard_operator.sharding import Membership
    from shard_operator.worker.runner import ShardWorker

    options: dict[str, Any] = {"socket_timeout": max(10.0, spec.get_timeout * 4), "health_check_interval": 30}
    client = redis.Redis.from_url(spec.redis_url, **{**options, **spec.redis_options})
    keys = Keys.for_controller(spec.controller)
    queue = RateLimitingQueue(client, keys, bucket=spec.bucket, claim_ttl=spec.claim_ttl)
    owner = f"{socket.gethostname()}:{os.getpid()}:{spec.shard}"
    membership = Membership(client, keys, spec.shard)
    context = spec.context_factory(client) if spec.context_factory is not None else {}
    worker = ShardWorker(queue, reconcile, controller=spec.controller, shard=spec.shard, owner=owner,
                         threads=spec.threads, get_timeout=spec.get_timeout,
                         **context)
    parent = os.getppid()

    def beat() -> None:
        while not stop.is_set():
            if os.getppid() != parent:  # the manager died (SIGKILL): drain, leave the ring and exit
                log.warning("the parent of shard %s's worker died; stopping", spec.shard)
                break
            try:
                membership.heartbeat()
            except Exception as exc:  # a Redis outage must not end the worker; the beat resumes after it
                log.warning("heartbeat of shard %s failed: %s", spec.shard, exc)
            stop.wait(spec.heartbeat_interval)
        worker.stop()

    beater = threading.Thread(target=beat, name="heartbeat", daemon=True)
    beater.start()
    try:
        worker.run()
    finally:
        stop.set()
        beater.join(timeout=5)
        with contextlib.suppress(Exception):
            membership.leave()
        client.close()


def _child_main(spec: WorkerSpec, reconcile: ReconcileFn, stop: Any) -> None:
    # SIGTERM from outside (the pod is stopping) means the same as the pool's stop: drain and leave.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    run_shard_worker(spec, reconcile, stop)


@dataclass
class _Slot:
    spec: WorkerSpec
    process: Any = None
    stop: Any = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0


class WorkerPool:
    """Starts one process per :class:`WorkerSpec` and restarts those that die.

    Call :meth:`supervise` periodically (the manager does, every ``interval``), or run
    :meth:`run_supervisor` in a thread. Restart backoff doubles from ``restart_backoff`` up to
    ``max_restart_backoff`` and resets once a child has run for ``stable_after`` seconds.
    """

    def __init__(self, specs: list[WorkerSpec], reconcile: ReconcileFn, *, restart_backoff: float = 1.0,
                 max_restart_backoff: float = 30.0, stable_after: float = 60.0) -> None:
        if len({spec.shard for spec in specs}) != len(specs):
            raise ValueError("each worker needs its own shard id")
        self.reconcile = reconcile
        self.restart_policy = RestartPolicy(restart_backoff, max_restart_backoff, stable_after)
        self._slots = [_Slot(spec) for spec in specs]
        self._ctx = multiprocess.get_context("fork")
        self._stopping = threading.Event()

    @property
    def pids(self) -> dict[str, int]:
        return {slot.spec.shard: slot.process.pid for slot in self._slots
                if slot.process is not None and slot.process.is_alive()}

    def start(self) -> None:
        """Start every child; a pool that was stopped can be started again."""
        self._stopping.clear()
        for slot in self._slots:
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.stop = self._ctx.Event()
        slot.process = self._ctx.Process(target=_child_main, args=(slot.spec, self.reconcile, slot.stop),
                                         name=f"worker-{slot.spec.shard}", daemon=False)
        slot.process.start()
        slot.started_at = time.monotonic()

    def supervise(self) -> list[str]:
        """Restart dead children whose backoff has passed; returns the shards restarted now."""
        restarted = []
        now = time.monotonic()
        for slot in self._slots:
            if self._stopping.is_set() or slot.process is None or slot.process.is_alive():
                continue
            if slot.next_start == 0.0:
                metrics.mark_process_dead(slot.process.pid)
                self.restart_policy.schedule(slot, now)
                log.warning("worker of shard %s exited with %s; restart in %.1fs", slot.spec.shard,
                            slot.process.exitcode, slot.next_start - now)
            if now >= slot.next_start:
                slot.next_start = 0.0
                self._start(slot)
                restarted.append(slot.spec.shard)
        return restarted

    def run_supervisor(self, interval: float = 0.5) -> None:
        while not self._stopping.wait(interval):
            self.supervise()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every child to drain and exit; kill those still running after ``timeout`` seconds."""
        self._stopping.set()
        for slot in self._slots:
            if slot.stop is not None:
                slot.stop.set()
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            if slot.process is None:
                continue
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.warning("worker of shard %s did not stop in %.0fs; killing it", slot.spec.shard, timeout)
                slot.process.kill()
                slot.process.join(5)
            metrics.mark_process_dead(slot.process.pid)
