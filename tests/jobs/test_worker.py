"""The job worker in this process (rq's burst mode): outcomes, key re-queue, refusals, metrics, status."""

from __future__ import annotations

import os

import pytest
import redis
from prometheus_client import REGISTRY
from rq import Queue

from shard_operator.jobs import Jobs, JobStatus, JSONSerializer, format_summary, job_summary
from tests.jobs.tasks import CONTROLLER, KEYS, QUEUE, registry, run_burst

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url):
    os.environ["JOBS_TEST_REDIS_URL"] = redis_url
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def jobs(client):
    return Jobs(client, CONTROLLER, registry=registry, queue=QUEUE)


@pytest.fixture(autouse=True)
def test_registry():
    from shard_operator.jobs import running

    running.use_registry(registry)
    yield
    running.use_registry(running.default_registry)


def dirty(client) -> set[str]:
    return {raw.decode() for raw in client.hkeys(KEYS.dirty)}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"controller": CONTROLLER, **labels}) or 0.0


def test_a_succeeded_job_puts_its_key_back_and_the_state_holds_its_result(jobs, client):
    before = sample("shard_operator_jobs_completed_total", task="sleep", outcome="succeeded")
    started = sample("shard_operator_jobs_started_total", task="sleep")
    handle = jobs.for_request("ns/a", 1)
    handle.enqueue_job("sleep", 0.01, name="build")
    assert dirty(client) == set()
    run_burst(client)
    assert dirty(client) == {"ns/a"}
    state = handle.job("build")
    assert state.status is JobStatus.FINISHED and state.succeeded and state.result == {"slept": 0.01}
    assert sample("shard_operator_jobs_completed_total", task="sleep", outcome="succeeded") == before + 1
    assert sample("shard_operator_jobs_started_total", task="sleep") == started + 1
    assert sample("shard_operator_job_duration_seconds_count", task="sleep") >= 1


def test_a_failed_job_puts_its_key_back_and_shows_in_the_status_summary(jobs, client):
    handle = jobs.for_request("ns/a", 1)
    handle.enqueue_job("fail", "the disk is full")
    run_burst(client)
    assert dirty(client) == {"ns/a"}
    state = handle.job("fail")
    assert state.failed and state.error == "RuntimeError: the disk is full"
    summary = job_summary(client, CONTROLLER, [QUEUE])
    assert [s.id for s in summary["ns/a"].failed] == [state.id] and summary["ns/a"].running == []
    assert "ns/a: 0 running, 0 queued, 1 failed" in format_summary(summary)


def test_a_result_that_is_not_json_fails_the_job_clearly(jobs, client):
    handle = jobs.for_request("ns/a", 1)
    handle.enqueue_job("not-json-result")
    run_burst(client)
    state = handle.job("not-json-result")
    assert state.failed and "JobSerializationError: the result of task 'not-json-result' is a set" in state.error


def test_a_job_that_names_any_function_but_the_trampoline_is_failed_unrun(client):
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    job = queue.enqueue_call("tests.jobs.tasks.mark_ran", args=["ran-marker"],
                             meta={"controller": CONTROLLER, "key": "ns/evil", "name": "x", "task": "x"})
    run_burst(client)
    assert client.get("ran-marker") is None
    job.refresh()
    assert job.get_status() == "failed"
    assert "names 'tests.jobs.tasks.mark_ran', not a registered task" in job.latest_result().exc_string


def test_a_trampoline_job_naming_an_unregistered_task_is_failed_unrun(client):
    queue = Queue(QUEUE, connection=client, serializer=JSONSerializer)
    job = queue.enqueue_call("shard_operator.jobs.running.run_task", args=["tests.jobs.tasks.mark_ran",
                                                                           ["ran-marker"], {}])
    run_burst(client)
    assert client.get("ran-marker") is None
    job.refresh()
    assert job.get_status() == "failed"
    assert "UnregisteredTaskError: no task is registered as 'tests.jobs.tasks.mark_ran'" in (
        job.latest_result().exc_string)


def test_a_job_superseded_while_running_does_not_requeue_its_key(jobs, client):
    jobs.for_request("ns/a", 1).enqueue_job("sleep", 0.01, name="build")
    # A newer generation's job took its place in the index (as if enqueued while the old one ran).
    newer = jobs.for_request("ns/a", 2)
    client.hset(f"{KEYS.prefix}:jobs:ns/a", "build", '{"id": "someone-else", "generation": "2"}')
    run_burst(client)
    assert dirty(client) == set()
    assert newer.job("build") is None
