"""Enqueueing from a reconcile: deterministic ids, idempotence per generation, supersession, JSON only."""

from __future__ import annotations

import json
import zlib

import pytest
import redis

from shard_operator.errors import JobSerializationError, UnregisteredTaskError
from shard_operator.jobs import Jobs, JobStatus
from shard_operator.keys import controller_queue, job_id
from tests.jobs.tasks import CONTROLLER, QUEUE, registry, sleep

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def jobs(client):
    return Jobs(client, CONTROLLER, registry=registry, queue=QUEUE)


def queued_ids(client) -> list[str]:
    return [raw.decode() for raw in client.lrange(f"rq:queue:{QUEUE}", 0, -1)]


def test_job_ids_are_deterministic_and_differ_by_each_part():
    base = job_id("c", "ns/a", 3, "build")
    assert base == job_id("c", "ns/a", 3, "build")
    others = {job_id("d", "ns/a", 3, "build"), job_id("c", "ns/b", 3, "build"), job_id("c", "ns/a", 4, "build"),
              job_id("c", "ns/a", 3, "test")}
    assert base not in others and len(others) == 4


def test_a_controllers_jobs_land_in_the_rq_queue_and_under_the_id_the_key_layout_names(client):
    queue = controller_queue(CONTROLLER)
    ref = Jobs(client, CONTROLLER, registry=registry, queue=queue).for_request("ns/a", 7).enqueue_job(
        sleep, 1.0, name="build")
    assert ref.id == job_id(CONTROLLER, "ns/a", 7, "build")
    assert [raw.decode() for raw in client.lrange(f"rq:queue:{queue}", 0, -1)] == [ref.id]
    assert client.exists(f"rq:job:{ref.id}")


def test_repeated_enqueues_of_one_generation_create_one_job(jobs, client):
    handle = jobs.for_request("ns/a", 1)
    first = handle.enqueue_job(sleep, 1.0, name="build")
    again = [jobs.for_request("ns/a", 1).enqueue_job("sleep", 1.0, name="build") for _ in range(5)]
    assert first.created and not any(ref.created for ref in again)
    assert {ref.id for ref in again} == {first.id}
    assert queued_ids(client) == [first.id]
    state = handle.job("build")
    assert state is not None and state.status is JobStatus.QUEUED and state.generation == "1"


def test_a_new_generation_supersedes_the_queued_job_of_the_old_one(jobs, client):
    old = jobs.for_request("ns/a", 1).enqueue_job(sleep, 1.0, name="build")
    new = jobs.for_request("ns/a", 2).enqueue_job(sleep, 2.0, name="build")
    assert new.created and new.id != old.id
    assert queued_ids(client) == [new.id]
    assert jobs.for_request("ns/a", 1).job("build") is None  # the old generation's outcome is not read
    assert jobs.for_request("ns/a", 2).job("build").id == new.id
    old_status = client.hget(f"rq:job:{old.id}", "status").decode()
    assert old_status == JobStatus.CANCELED


def test_jobs_of_different_names_and_objects_are_independent(jobs, client):
    a = jobs.for_request("ns/a", 1)
    refs = [a.enqueue_job(sleep, 1.0, name="one"), a.enqueue_job(sleep, 1.0, name="two"),
            jobs.for_request("ns/b", 1).enqueue_job(sleep, 1.0, name="one")]
    assert len({ref.id for ref in refs}) == 3 and len(queued_ids(client)) == 3
    assert set(jobs.states("ns/a")) == {"one", "two"}


@pytest.mark.parametrize(("args", "kwargs", "words"), [
    (({1, 2},), {}, "argument 0 of task 'sleep' is a set"),
    ((object(),), {}, "argument 0 of task 'sleep' is a object"),
    ((float("nan"),), {}, "argument 0 of task 'sleep' is nan"),
    (({"ok": [1, b"bytes"]},), {}, "argument 0 of task 'sleep'['ok'][1] is a bytes"),
    (({1: "int key"},), {}, "JSON object keys must be strings"),
    ((), {"seconds": {1.5j}}, "keyword arguments of task 'sleep'['seconds'] is a set"),
])
def test_arguments_that_are_not_json_are_refused_at_enqueue_with_a_clear_error(jobs, client, args, kwargs, words):
    with pytest.raises(JobSerializationError, match=r"not JSON|cannot hold|must be strings") as raised:
        jobs.for_request("ns/a", 1).enqueue_job(sleep, *args, **kwargs)
    assert words in str(raised.value)
    assert queued_ids(client) == []


def test_an_unregistered_task_is_refused_at_enqueue(jobs, client):
    def not_a_task(x):
        return x

    with pytest.raises(UnregisteredTaskError, match="not a registered task"):
        jobs.for_request("ns/a", 1).enqueue_job(not_a_task, 1)
    with pytest.raises(UnregisteredTaskError, match=r"no task is registered as 'os\.system'"):
        jobs.for_request("ns/a", 1).enqueue_job("os.system", "true")
    assert queued_ids(client) == []


def test_job_data_in_redis_is_json_naming_the_trampoline_not_the_task(jobs, client):
    ref = jobs.for_request("ns/a", 7).enqueue_job(sleep, 0.5, name="build")
    data = json.loads(zlib.decompress(client.hget(f"rq:job:{ref.id}", "data")))
    assert data == ["shard_operator.jobs.running.run_task", None, ["sleep", [0.5], {}], {}]
    meta = json.loads(client.hget(f"rq:job:{ref.id}", "meta"))
    assert meta == {"controller": CONTROLLER, "key": "ns/a", "generation": "7", "name": "build", "task": "sleep"}


def test_enqueuing_from_a_reconcile_also_schedules_a_backstop_reconcile_after_the_time_limit(client, jobs):
    import time

    from shard_operator.keys import Keys
    from shard_operator.queue import RateLimitingQueue
    from shard_operator.reconcile import Request
    from shard_operator.worker.runner import ShardWorker

    keys = Keys.for_controller(CONTROLLER)
    queue = RateLimitingQueue(client, keys, bucket=None)
    worker = ShardWorker(queue, lambda request, ctx: None, controller=CONTROLLER, shard="s0", owner="test",
                         jobs=jobs)
    ctx = worker.context_for(Request("ns", "a"))
    before = time.time()
    ref = ctx.enqueue_job(sleep, 0.1, name="nap", timeout=20, retry=2, generation=1)
    assert ref.created
    due = client.zscore(keys.delayed, "ns/a")
    assert due is not None and before + 20 * 3 + 5 <= due <= time.time() + 20 * 3 + 5
    client.zrem(keys.delayed, "ns/a")
    assert not ctx.enqueue_job(sleep, 0.1, name="nap", timeout=20, retry=2, generation=1).created
    assert client.zscore(keys.delayed, "ns/a") is None  # the same job again: no second backstop
