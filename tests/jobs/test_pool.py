"""Job worker processes with a real reconcile loop: every outcome brings the key back; killed workers heal.

A reconcile of shard ``s0`` (a :func:`run_shard_worker` thread) reads its object's job and
enqueues it when there is none; the records show what each reconcile saw.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from rq.registry import StartedJobRegistry

from shard_operator.jobs import Jobs, JobState, JobStatus, JSONSerializer, job_summary, sweep_abandoned
from shard_operator.queue import RateLimitingQueue
from tests.jobs.tasks import CONTROLLER, KEYS, QUEUE, job_workers, registry, shard_worker, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


class Harness:
    """A reconcile that enqueues ``task(*args)`` once per generation and records each job state it saw."""

    def __init__(self, redis_url: str, task: str, *args, **options) -> None:
        self.jobs = Jobs(redis_url, CONTROLLER, registry=registry, queue=QUEUE)
        self.task, self.args, self.options = task, args, options
        self.seen: list[tuple[float, JobState | None]] = []
        self.durations: list[float] = []

    def __call__(self, request, ctx) -> None:
        started = time.monotonic()
        handle = ctx.jobs.for_request(request.key, 1)
        state = handle.job("work")
        if state is None:
            handle.enqueue_job(self.task, *self.args, name="work", **self.options)
        self.seen.append((time.monotonic(), state))
        self.durations.append(time.monotonic() - started)

    def last(self) -> JobState | None:
        return self.seen[-1][1] if self.seen else None

    def done(self) -> JobState | None:
        state = self.last()
        return state if state is not None and state.done else None


def run(redis_url: str, client, harness: Harness, timeout: float = 10.0) -> JobState:
    with job_workers(redis_url), shard_worker(redis_url, harness, {"jobs": harness.jobs}):
        RateLimitingQueue(client, KEYS, bucket=None).add("ns/obj")
        return wait_for(harness.done, timeout, "a reconcile that sees the job done")


def test_success_brings_the_key_back_and_the_reconcile_reads_the_result(redis_url, client):
    harness = Harness(redis_url, "sleep", 0.2)
    state = run(redis_url, client, harness)
    assert state.succeeded and state.result == {"slept": 0.2}
    assert harness.seen[0][1] is None and len(harness.seen) >= 2


def test_failure_brings_the_key_back_and_the_reconcile_reads_the_error(redis_url, client):
    harness = Harness(redis_url, "fail", "no quota")
    state = run(redis_url, client, harness)
    assert state.status is JobStatus.FAILED and state.error == "RuntimeError: no quota"


def test_timeout_fails_the_job_and_brings_the_key_back(redis_url, client):
    harness = Harness(redis_url, "sleep", 30, timeout=1)
    started = time.monotonic()
    state = run(redis_url, client, harness, timeout=8)
    assert time.monotonic() - started < 6
    assert state.failed and "JobTimeoutException" in state.error


def test_each_retry_brings_the_key_back_and_the_reconcile_sees_the_retry(redis_url, client):
    harness = Harness(redis_url, "flaky", "flaky-counter", 1, 0.5, retry=2)
    state = run(redis_url, client, harness)
    assert state.succeeded and state.result == 2
    between = [s for _, s in harness.seen if s is not None and not s.done]
    assert between, "no reconcile ran between the failed attempt and the retry's success"
    assert between[0].retries_left == 1 and "attempt 1 failed on purpose" in (between[0].error or "")


def test_a_worker_sigkilled_mid_job_has_its_job_retried_and_the_key_reconciled_again(redis_url, client):
    harness = Harness(redis_url, "slow-first", "kill-counter", 30, retry=1)
    registry_ = StartedJobRegistry(QUEUE, connection=client, serializer=JSONSerializer)
    with job_workers(redis_url, alive_ttl=1.0, sweep_interval=0.5) as pool, \
            shard_worker(redis_url, harness, {"jobs": harness.jobs}):
        RateLimitingQueue(client, KEYS, bucket=None).add("ns/obj")
        running = wait_for(lambda: harness.jobs.state("ns/obj", "work", 1), 5, "the job")
        wait_for(lambda: harness.jobs.state("ns/obj", "work").running, 5, "the job to start")
        summary = job_summary(client, CONTROLLER, [QUEUE])
        assert [s.id for s in summary["ns/obj"].running] == [running.id]
        reconciles = len(harness.seen)
        (pid,) = pool.pids.values()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not harness.jobs.state("ns/obj", "work").running, 2.0, "the job to leave 'started'")
        assert time.monotonic() - killed < 2.0  # the pool saw its child die: no TTL wait
        # a generous bound: the restarted job worker process must import rq and register before it runs the
        # retry, which takes seconds on a loaded 2-core machine; what is asserted is that the retry happens
        state = wait_for(harness.done, 30, "a reconcile that sees the retried job done")
    assert state.succeeded and state.result == 2 and state.retries_left == 0
    assert len(harness.seen) > reconciles
    assert registry_.get_job_ids(cleanup=False) == []


def test_a_job_abandoned_by_a_worker_no_pool_watches_is_failed_within_the_bound(redis_url, client):
    jobs = Jobs(client, CONTROLLER, registry=registry, queue=QUEUE)
    alive_ttl = 1.0
    with job_workers(redis_url, supervise=False, alive_ttl=alive_ttl) as pool:
        ref = jobs.for_request("ns/orphan", 3).enqueue_job("sleep", 30)
        wait_for(lambda: jobs.state("ns/orphan", ref.name).running, 5, "the job to start")
        (pid,) = pool.pids.values()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # Another pod's sweeper knows nothing of this worker but its expired liveness key.
        swept = wait_for(lambda: sweep_abandoned(client, [QUEUE]), alive_ttl + 2, "the sweep", interval=0.1)
        elapsed = time.monotonic() - killed
        assert swept == [ref.id]
        assert elapsed <= alive_ttl + 0.5
        state = jobs.state("ns/orphan", ref.name)
        assert state.status is JobStatus.FAILED and "AbandonedJobError" in (state.traceback or "")
        assert client.hexists(KEYS.dirty, "ns/orphan")  # the key is back on the work queue
        assert StartedJobRegistry(QUEUE, connection=client, serializer=JSONSerializer).get_job_ids(
            cleanup=False) == []
