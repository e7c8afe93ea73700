"""Tasks and helpers the job tests share: a registry of their own, so the default one stays empty."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from rq import Queue

from shard_operator.jobs import JobWorkerPool, JSONSerializer, TaskRegistry
from shard_operator.jobs.running import JobWorker
from shard_operator.keys import Keys
from shard_operator.sharding import Assigner
from shard_operator.worker.pool import WorkerSpec, run_shard_worker
from tests.waiting import eventually as wait_for

CONTROLLER = "jobs-test"
QUEUE = "jobs-test"
KEYS = Keys.for_controller(CONTROLLER)

registry = TaskRegistry()


def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBS_TEST_REDIS_URL"])


@registry.register("sleep")
def sleep(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@registry.register("fail")
def fail(message: str) -> None:
    raise RuntimeError(message)


@registry.register("flaky")
def flaky(counter: str, failures: int, then_sleep: float = 0.0) -> int:
    """Fails its first ``failures`` attempts (counted in Redis), then sleeps and returns the attempt."""
    attempt = int(_client().incr(counter))
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} failed on purpose")
    time.sleep(then_sleep)
    return attempt


@registry.register("slow-first")
def slow_first(counter: str, seconds: float) -> int:
    """Sleeps ``seconds`` on its first attempt only (the test kills the worker then)."""
    attempt = int(_client().incr(counter))
    if attempt == 1:
        time.sleep(seconds)
    return attempt


@registry.register("not-json-result")
def not_json_result() -> Any:
    return {1, 2}


def mark_ran(key: str) -> None:
    """Not registered: a job naming it must never run."""
    _client().set(key, "ran")


def run_burst(client: redis.Redis) -> None:
    """Run every queued job in this process (rq's burst mode), restoring the signal handlers rq installs."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        JobWorker([Queue(QUEUE, connection=client, serializer=JSONSerializer)], connection=client).work(
            burst=True, logging_level="ERROR")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def job_workers(redis_url: str, n: int = 1, *, supervise: bool = True, **options: Any) -> Iterator[JobWorkerPool]:
    os.environ["JOBS_TEST_REDIS_URL"] = redis_url  # read by tasks in the forked children
    options = {"alive_ttl": 1.0, "sweep_interval": 0.5, "restart_backoff": 0.1, "logging_level": "ERROR", **options}
    pool = JobWorkerPool(n, redis_url, [QUEUE], registry=registry, **options)
    pool.start()
    halt = threading.Event()

    def supervisor() -> None:
        while not halt.wait(0.1):
            pool.supervise()

    thread = threading.Thread(target=supervisor, daemon=True)
    if supervise:
        thread.start()
    try:
        yield pool
    finally:
        halt.set()
        if supervise:
            thread.join()
        pool.stop(timeout=5)


@contextmanager
def shard_worker(redis_url: str, reconcile: Callable[..., Any], context: dict[str, Any]) -> Iterator[None]:
    """One reconcile worker of shard ``s0`` in a thread, with the ring published; ``context`` are parts of
    each reconcile's Context (``jobs``)."""
    spec = WorkerSpec(controller=CONTROLLER, shard="s0", redis_url=redis_url, heartbeat_interval=0.1,
                      get_timeout=0.1, bucket=None, context_factory=lambda _client: dict(context))
    stop = threading.Event()
    thread = threading.Thread(target=run_shard_worker, args=(spec, reconcile, stop), daemon=True)
    thread.start()
    client = redis.Redis.from_url(redis_url)
    try:
        assigner = Assigner(client, KEYS, member_ttl=5.0)
        wait_for(lambda: assigner.rebalance() and client.lrange(KEYS.ring, 0, -1), 5, "the ring")
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        client.close()
