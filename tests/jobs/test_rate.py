"""A reconcile that hands 5 s of work to a job returns in milliseconds; the other keys keep their rate."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from shard_operator.jobs import Jobs
from shard_operator.queue import RateLimitingQueue
from shard_operator.reconcile import Result
from tests.jobs.tasks import CONTROLLER, KEYS, QUEUE, job_workers, registry, shard_worker, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

OTHERS = [f"ns/other-{i}" for i in range(10)]


def test_a_reconcile_enqueuing_a_5s_job_returns_in_ms_and_other_keys_keep_their_rate(redis_url):
    client = redis.Redis.from_url(redis_url)
    jobs = Jobs(redis_url, CONTROLLER, registry=registry, queue=QUEUE)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    slow_durations: list[float] = []
    slow_seen: list[str | None] = []

    def reconcile(request, ctx):
        if request.key == "ns/slow":
            started = time.monotonic()
            handle = ctx.jobs.for_request(request.key, 1)
            state = handle.job("build")
            if state is None:
                handle.enqueue_job("sleep", 5.0, name="build")
            slow_durations.append(time.monotonic() - started)
            slow_seen.append(None if state is None else state.status.value)
            return None
        time.sleep(0.002)  # an ordinary reconcile: a couple of fast API calls
        with lock:
            counts[request.key] += 1
        return Result(requeue_after=0.001)

    def rate(seconds: float) -> float:
        with lock:
            before = sum(counts.values())
        time.sleep(seconds)
        with lock:
            return (sum(counts.values()) - before) / seconds

    try:
        with job_workers(redis_url), shard_worker(redis_url, reconcile, {"jobs": jobs}):
            queue = RateLimitingQueue(client, KEYS, bucket=None)
            queue.add_many(OTHERS)
            wait_for(lambda: len(counts) == len(OTHERS), 5, "every other key to be reconciled")
            baseline = rate(1.5)
            queue.add("ns/slow")
            wait_for(lambda: jobs.state("ns/slow", "build") and jobs.state("ns/slow", "build").running, 3,
                     "the job to start")
            during = rate(3.0)
            assert jobs.state("ns/slow", "build").running, "the window must lie inside the job's run"
            wait_for(lambda: slow_seen and slow_seen[-1] == "finished", 8, "the reconcile that sees the result")
    finally:
        client.close()
    assert baseline > 50, f"the no-job rate {baseline:.0f}/s is too low to compare"
    assert during > baseline / 2, f"rate fell from {baseline:.0f}/s to {during:.0f}/s while the job ran"
    assert slow_durations[0] < 0.05, f"the enqueuing reconcile took {slow_durations[0] * 1000:.1f} ms"
    assert slow_seen[0] is None and len(slow_seen) >= 2
