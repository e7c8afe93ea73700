"""Invariants I1-I3 (and I5 for killed workers) proven from records of a multi-process run.

Eight worker processes against the real redis-server reconcile 500 keys while a producer adds
10,000 times. Before each add the producer bumps the key's version in Redis; each reconcile reads
the version when it starts and records start and end. From the records:

- I1: the reconciles of one key never overlap (a SIGKILLed reconcile ends when its process died);
- I2: each key's final version is seen by a reconcile that completed;
- I3: a key gets no more reconciles than adds, and the run as a whole far fewer.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
from collections import defaultdict

import pytest
import redis

from shard_operator.keys import Keys
from shard_operator.queue import RateLimitingQueue
from shard_operator.reconcile import Request
from shard_operator.sharding import Assigner
from shard_operator.worker.pool import WorkerPool, WorkerSpec

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CONTROLLER = "stress"
KEYS = [f"ns{i % 7}/obj-{i}" for i in range(500)]
ADDS = 10_000


class RecordingReconcile:
    """Records start (with the version it saw) and end; takes 0-3 ms, like a fast API call."""

    def __init__(self, url: str) -> None:
        self.log = LogClient(url)

    def __call__(self, request: Request, ctx) -> None:
        recording_reconcile(request, self.log)


def recording_reconcile(request: Request, log: LogClient) -> None:
    version = int(log.get(f"ver:{request.key}") or 0)
    log.rpush("log", f"S|{request.key}|{os.getpid()}|{time.time():.6f}|{version}")
    time.sleep(random.random() * 0.003)
    log.rpush("log", f"E|{request.key}|{os.getpid()}|{time.time():.6f}|{version}")


class LogClient:
    """A Redis client created lazily in each worker process (never shared across the fork)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._pid = 0

    def __getattr__(self, name: str):
        if self._client is None or self._pid != os.getpid():
            self._client = redis.Redis.from_url(self.url)
            self._pid = os.getpid()
        return getattr(self._client, name)


def specs(redis_url: str, shards: list[str], batch: int = 1) -> list[WorkerSpec]:
    return [WorkerSpec(controller=CONTROLLER, shard=shard, redis_url=redis_url, claim_ttl=1.0,
                       heartbeat_interval=0.2, get_timeout=0.2, bucket=None, threads=batch, batch=batch)
            for shard in shards]


class Coordinator(threading.Thread):
    """What the leader does: publish the ring of live shards and re-queue expired claims."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        keys = Keys.for_controller(CONTROLLER)
        self.assigner = Assigner(client, keys, member_ttl=0.6)
        self.queue = RateLimitingQueue(client, keys, bucket=None)
        self.halt = threading.Event()
        self.reaped = 0
        self.rebalances = 0

    def run(self) -> None:
        while not self.halt.wait(0.1):
            if self.assigner.rebalance().changed:
                self.rebalances += 1
            self.reaped += self.queue.reap_expired(limit=1000)


def produce(client: redis.Redis, queue: RateLimitingQueue, seconds: float) -> dict[str, int]:
    """ADDS adds spread over ``seconds``; returns the adds per key."""
    adds: dict[str, int] = defaultdict(int)
    rng = random.Random(7)
    batch = 50
    for _ in range(0, ADDS, batch):
        chosen = [rng.choice(KEYS) for _ in range(batch)]
        pipe = client.pipeline(transaction=False)
        for key in chosen:
            pipe.incr(f"ver:{key}")
            adds[key] += 1
        pipe.execute()
        queue.add_many(chosen)  # after the versions: a reconcile that starts later sees them
        time.sleep(seconds * batch / ADDS)
    return adds


def wait_until_idle(client: redis.Redis, keys: Keys, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipe = client.pipeline()
        pipe.hlen(keys.dirty)
        pipe.hlen(keys.processing)
        pipe.zcard(keys.delayed)
        if sum(pipe.execute()) == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the queue did not drain")


def check_invariants(client: redis.Redis, adds: dict[str, int], deaths: dict[int, float]) -> dict[str, int]:
    open_runs: dict[tuple[str, int], tuple[float, int]] = {}
    runs: dict[str, list[tuple[float, float, int, bool]]] = defaultdict(list)
    for raw in client.lrange("log", 0, -1):
        kind, key, pid_text, when_text, version_text = raw.decode().split("|")
        pid, when, version = int(pid_text), float(when_text), int(version_text)
        if kind == "S":
            assert (key, pid) not in open_runs, f"{key} started twice in process {pid}"
            open_runs[(key, pid)] = (when, version)
        else:
            started, seen = open_runs.pop((key, pid))
            runs[key].append((started, when, seen, True))
    for (key, pid), (started, seen) in open_runs.items():
        assert pid in deaths, f"{key} never finished in {pid}, which was not killed"
        runs[key].append((started, deaths[pid], seen, False))

    for key, key_runs in runs.items():
        key_runs.sort()
        for before, after in itertools.pairwise(key_runs):
            assert after[0] >= before[1], f"I1: reconciles of {key} overlap: {before} and {after}"
    for key, count in adds.items():
        final = int(client.get(f"ver:{key}"))
        completed = [seen for _, _, seen, finished in runs[key] if finished]
        assert completed and max(completed) == final, f"I2: the last change of {key} was never reconciled"
        assert len(runs[key]) <= count + sum(1 for r in runs[key] if not r[3]), f"I3: {key} reconciled too often"
    total = sum(len(r) for r in runs.values())
    assert total < ADDS * 0.9, f"I3: {total} reconciles for {ADDS} adds did not collapse"
    return {"reconciles": total, "killed_runs": sum(1 for r in runs.values() for x in r if not x[3])}


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def run_scenario(redis_url: str, client: redis.Redis, *, kill: bool, churn: bool, batch: int = 1) -> dict[str, int]:
    keys = Keys.for_controller(CONTROLLER)
    coordinator = Coordinator(client)
    pool = WorkerPool(specs(redis_url, [f"w{i}" for i in range(8)], batch), RecordingReconcile(redis_url),
                      restart_backoff=0.1)
    extra = WorkerPool(specs(redis_url, ["x0", "x1"], batch), RecordingReconcile(redis_url))
    deaths: dict[int, float] = {}
    halt = threading.Event()

    def killer() -> None:
        rng = random.Random(11)
        while not halt.wait(0.4):
            pid = rng.choice(sorted(pool.pids.values()))
            deaths[pid] = time.time()
            os.kill(pid, signal.SIGKILL)

    pool.start()
    coordinator.start()
    threads = []
    try:
        deadline = time.monotonic() + 10
        while len(client.lrange(keys.ring, 0, -1)) < 8:
            assert time.monotonic() < deadline, "the workers did not join the ring"
            time.sleep(0.05)
        supervisor = threading.Thread(target=pool.run_supervisor, args=(0.05,), daemon=True)
        supervisor.start()
        if kill:
            threads.append(threading.Thread(target=killer, daemon=True))
        for thread in threads:
            thread.start()
        queue = RateLimitingQueue(client, keys, bucket=None)
        if churn:
            producer_done = threading.Event()

            def churner() -> None:
                while not producer_done.is_set():
                    extra.start()
                    time.sleep(0.7)
                    extra.stop(timeout=10)
                    time.sleep(0.5)

            churn_thread = threading.Thread(target=churner, daemon=True)
            churn_thread.start()
        adds = produce(client, queue, seconds=2.0)
        if churn:
            producer_done.set()
            churn_thread.join(timeout=30)
        halt.set()
        for thread in threads:
            thread.join()
        wait_until_idle(client, keys, timeout=60)
    finally:
        halt.set()
        pool.stop(timeout=10)
        extra.stop(timeout=10)
        coordinator.halt.set()
        coordinator.join()
    figures = check_invariants(client, adds, deaths)
    figures.update(reaped=coordinator.reaped, rebalances=coordinator.rebalances, kills=len(deaths))
    return figures


def test_eight_workers_keep_one_at_a_time_nothing_lost_and_collapse(redis_url, client):
    figures = run_scenario(redis_url, client, kill=False, churn=False)
    assert figures["killed_runs"] == 0


def test_invariants_hold_when_workers_are_killed_at_random(redis_url, client):
    figures = run_scenario(redis_url, client, kill=True, churn=False)
    assert figures["kills"] >= 3
    # No claim needs to expire and be reaped: the pool releases a dead worker's claims at once.


def test_invariants_hold_while_shards_join_and_leave(redis_url, client):
    figures = run_scenario(redis_url, client, kill=False, churn=True)
    assert figures["rebalances"] >= 3  # x0 and x1 joined and left at least once


def test_invariants_hold_with_batch_claims_while_workers_are_killed_and_shards_join_and_leave(redis_url, client):
    """Batch mode (4 keys per claim, 4 threads per process): the same records prove I1-I3."""
    figures = run_scenario(redis_url, client, kill=True, churn=True, batch=4)
    assert figures["kills"] >= 3 and figures["rebalances"] >= 3
