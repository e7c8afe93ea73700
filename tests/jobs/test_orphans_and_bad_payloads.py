"""Job workers end with their manager, and a malformed job fails alone while its worker goes on."""

from __future__ import annotations

import os
import signal
import time

import multiprocess
import pytest
import redis
from rq import Queue
from rq.job import Job

from shard_operator.jobs import Jobs, JobWorkerPool, JSONSerializer
from tests.jobs.tasks import CONTROLLER, QUEUE, registry, run_burst
from tests.waiting import eventually

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url):
    os.environ["JOBS_TEST_REDIS_URL"] = redis_url
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def test_registry():
    from shard_operator.jobs import running

    running.use_registry(registry)
    yield
    running.use_registry(running.default_registry)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _manager(redis_url: str, path: str) -> None:
    pool = JobWorkerPool(2, redis_url, [QUEUE], registry=registry, logging_level="ERROR")
    pool.start()
    time.sleep(0.5)
    with open(path, "w") as out:
        out.write(" ".join(str(pid) for pid in pool.pids.values()))
    time.sleep(60)


def test_job_workers_exit_when_their_manager_is_sigkilled(redis_url, tmp_path):
    pids_file = tmp_path / "pids"
    manager = multiprocess.get_context("fork").Process(target=_manager, args=(redis_url, str(pids_file)))
    manager.start()
    text = eventually(lambda: pids_file.exists() and pids_file.read_text(), what="the job workers to start")
    workers = [int(pid) for pid in text.split()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    os.kill(manager.pid, signal.SIGKILL)
    manager.join(5)
    eventually(lambda: not any(_alive(pid) for pid in workers), timeout=5.0, what="the orphaned job workers to exit")


@pytest.mark.parametrize(("field", "value"), [("data", b"\x00not json"), ("data", b"[1]"), ("meta", b"[1, 2]")])
def test_a_malformed_job_fails_cleanly_and_the_worker_runs_the_next_job(client, field, value):
    jobs = Jobs(client, CONTROLLER, registry=registry, queue=QUEUE)
    bad = jobs.for_request("ns/bad", 1).enqueue_job("sleep", 0.01, name="bad")
    good = jobs.for_request("ns/good", 1).enqueue_job("sleep", 0.01, name="good")
    client.hset(Job.key_for(bad.id), field, value)
    run_burst(client)
    status = {ref.id: client.hget(Job.key_for(ref.id), "status") for ref in (bad, good)}
    assert status[good.id] == b"finished"
    assert status[bad.id] == (b"failed" if field == "data" else b"finished")
    assert Queue(QUEUE, connection=client, serializer=JSONSerializer).count == 0
