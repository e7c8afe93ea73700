"""Worker processes: one shard each, run by the shared supervised process pool.

Where it sits: the manager (or a test, or the queue benchmark) builds one :class:`WorkerSpec` per
shard and hands them to a :class:`WorkerPool`, a thin user of
:class:`~shard_operator.supervision.ProcessPool` (fork, restart backoff, parent-death check, drain
then kill). Each child creates its own Redis client (never inherited across the fork), announces its
shard with a heartbeat, and runs a :class:`~shard_operator.worker.runner.ShardWorker`.

When a child dies, the pool knows its owner id (host, pid, shard), so it releases that child's
claims at once and their keys are queued again within a supervision tick, not after the claim TTL
(I5). A child restarted with a delay (it died again soon after a start) leaves the shard ring
meanwhile, so the live shards take its keys over at the leader's next rebalance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shard_operator import logs
from shard_operator.cache.scope import Selectors
from shard_operator.errors import ShardOperatorError
from shard_operator.keys import Keys
from shard_operator.queue import RateLimitingQueue, TokenBucket, WorkQueue
from shard_operator.sharding import Membership
from shard_operator.storage import connect
from shard_operator.supervision import Child, Exit, ProcessPool, RestartPolicy
from shard_operator.worker.runner import ReconcileFn

__all__ = ["WorkerPool", "WorkerSpec", "run_shard_worker", "worker_owner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, picklable: it crosses the process boundary."""

    controller: str
    shard: str
    redis_url: str
    threads: int = 1
    #: Keys claimed per script call by idle threads (1: one ``get`` per thread, as before). With N > 1
    #: the worker claims up to min(N, idle threads) keys at once and releases finished ones together
    #: (:meth:`~shard_operator.worker.runner.ShardWorker.run`); ``threads`` should be >= N.
    batch: int = 1
    claim_ttl: float = 30.0
    heartbeat_interval: float = 2.0
    get_timeout: float = 1.0
    bucket: TokenBucket | None = field(default_factory=lambda: TokenBucket(qps=10.0, burst=100))
    #: Extra keyword arguments for ``redis.Redis.from_url`` in the child (TLS options, a connection class).
    redis_options: dict[str, Any] = field(default_factory=dict)
    #: Called in the child with its Redis client; returns the context parts of :class:`~.runner.ShardWorker` (``cache``,
    #: ``client``, ``recorder``, ``resource``). The manager builds the API client here, after the fork.
    context_factory: Callable[[Any], dict[str, Any]] | None = None
    #: The namespaces this process watches (None: all): the worker reconciles no key outside them, whatever
    #: scope an older leader left in Redis.
    namespaces: tuple[str, ...] | None = None
    #: The primary resource's label and field selectors in this process (None: not checked): the worker
    #: reconciles a key only once the leader's first list with them is in the cache.
    selectors: Selectors | None = None


def worker_owner(shard: str, pid: int | None = None) -> str:
    """The owner id a worker process claims keys under: ``<host>:<pid>:<shard>``."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}:{shard}"


def run_shard_worker(spec: WorkerSpec, reconcile: ReconcileFn, stop: Any) -> None:
    """The body of a worker process (also callable in a thread for tests): runs until ``stop`` is set."""
    from shard_operator.worker.runner import ShardWorker

    options: dict[str, Any] = {"socket_timeout": max(10.0, spec.get_timeout * 4), "health_check_interval": 30}
    client = connect(spec.redis_url, **{**options, **spec.redis_options})
    keys = Keys.for_controller(spec.controller)
    queue = RateLimitingQueue(client, keys, bucket=spec.bucket, claim_ttl=spec.claim_ttl)
    membership = Membership(client, keys, spec.shard)
    context = spec.context_factory(client) if spec.context_factory is not None else {}
    worker = ShardWorker(queue, reconcile, controller=spec.controller, shard=spec.shard,
                         owner=worker_owner(spec.shard), threads=spec.threads, batch=spec.batch,
                         get_timeout=spec.get_timeout, namespaces=spec.namespaces,
                         selectors=spec.selectors, **context)

    def beat() -> None:
        while not stop.is_set():
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


def _worker_main(stop: threading.Event, spec: WorkerSpec, reconcile: ReconcileFn) -> None:
    logs.set_process("worker", spec.shard, controller=spec.controller)  # its claim renewer's thread too
    run_shard_worker(spec, reconcile, stop)


class WorkerPool:
    """Starts one process per :class:`WorkerSpec` and restarts those that die (see the module docstring).

    Call :meth:`supervise` periodically (the manager does), or run :meth:`run_supervisor` in a thread.
    Restart backoff doubles from ``restart_backoff`` up to ``max_restart_backoff`` and resets once a
    child has run for ``stable_after`` seconds. :meth:`stop` asks every child to finish its in-flight
    keys, leave the ring and exit, and kills those that do not within the timeout.
    """

    def __init__(self, specs: list[WorkerSpec], reconcile: ReconcileFn, *, restart_backoff: float = 1.0,
                 max_restart_backoff: float = 30.0, stable_after: float = 5.0) -> None:
        if not specs or len({spec.shard for spec in specs}) != len(specs):
            raise ValueError("a worker pool needs at least one spec, each with its own shard id")
        self.specs, self.reconcile = list(specs), reconcile
        self.restart_policy = RestartPolicy(restart_backoff, max_restart_backoff, stable_after)
        self._pool = ProcessPool(len(self.specs), self._child, policy=self.restart_policy, on_exit=self._exited)
        self._clients: dict[str, Any] = {}

    @property
    def pids(self) -> dict[str, int]:
        """Shard → pid of the live children."""
        return {name.removeprefix("worker-"): pid for name, pid in self._pool.pids.items()}

    def start(self) -> None:
        """Start every child; a pool that was stopped can be started again."""
        self._pool.start()

    def supervise(self) -> list[str]:
        """Release dead children's claims and restart them after their backoff; returns the shards that died."""
        return [self.specs[exit.slot].shard for exit in self._pool.supervise()]

    def run_supervisor(self, interval: float = 0.5) -> None:
        self._pool.run_supervisor(interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every child to drain and exit; kill those still running after ``timeout`` seconds."""
        self._pool.stop(timeout)
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _child(self, index: int) -> Child:
        spec = self.specs[index]
        return Child(f"worker-{spec.shard}", _worker_main, (spec, self.reconcile))

    def _exited(self, exits: list[Exit]) -> None:
        for exit in exits:
            spec = self.specs[exit.slot]
            if exit.restart_in is None and exit.exitcode == 0:
                continue  # drained on stop: it released its claims itself
            try:
                self._release(spec, exit)
            except (ShardOperatorError, ValueError) as exc:  # the claims expire after claim_ttl instead
                log.warning("could not release the claims of shard %s's dead worker: %s", spec.shard, exc)

    def _release(self, spec: WorkerSpec, exit: Exit) -> None:
        client = self._clients.get(spec.redis_url)
        if client is None:
            options = {"socket_connect_timeout": 2, "socket_timeout": 5, **spec.redis_options}
            client = self._clients[spec.redis_url] = connect(spec.redis_url, **options)
        keys = Keys.for_controller(spec.controller)
        queue = WorkQueue(client, keys, claim_ttl=spec.claim_ttl)
        released = queue.release_owner(worker_owner(spec.shard, exit.pid))  # it exited: safe (I1)
        if released:
            log.warning("released %d claim(s) of shard %s's dead worker (pid %d)", released, spec.shard, exit.pid)
        if exit.restart_in:  # restarted later: the live shards take its keys over meanwhile
            Membership(client, keys, spec.shard).leave()
