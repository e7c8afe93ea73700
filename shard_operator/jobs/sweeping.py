"""Abandoned jobs: a job whose worker died mid-run is retried or failed, and its object reconciled again.

How it is detected: every job worker process keeps ``so:jobs:alive:<worker name>`` alive with a short
TTL (``alive_ttl``) from a thread of its own, and rq records on each started job the name of the
worker running it. :func:`sweep_abandoned` (run by every :class:`~.pool.JobWorkerPool` supervisor
every ``sweep_interval`` seconds, under a per-queue lock so one process sweeps at a time) looks at
each queue's ``StartedJobRegistry``: a job still "started" whose worker's key is gone is abandoned.
A pool also sweeps at once when it sees one of its own children die. The abandoned job is handed to
rq's own abandoned-job handling (``StartedJobRegistry.cleanup``: retry if it has retries left, else
fail with ``AbandonedJobError``), and after that is saved its key is added back to the work queue.

Bound: a job is retried or failed within ``alive_ttl + sweep_interval`` (plus a sweep's run time) of
its worker's death, or within one supervision interval when the worker's own pool saw it die.
rq's own detection (the execution's heartbeat TTL, at least 60 s) remains as a backstop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry

from shard_operator import metrics
from shard_operator.jobs.running import Requeuer
from shard_operator.jobs.serialization import JSONSerializer
from shard_operator.jobs.state import JobStatus
from shard_operator.keys import alive_key, sweep_lock_key

__all__ = ["sweep_abandoned", "update_queue_depth"]

log = logging.getLogger(__name__)

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def sweep_abandoned(client: redis.Redis, queues: Iterable[str], *, dead_workers: Iterable[str] = (),
                    lock_ttl: float = 30.0) -> list[str]:
    """Retry or fail the abandoned jobs of ``queues``; returns their ids. See the module docstring.

    ``dead_workers`` are worker names known to be dead (their liveness keys are deleted first).
    A queue another process is sweeping right now is skipped.
    """
    dead = list(dead_workers)
    if dead:
        client.delete(*[alive_key(name) for name in dead])
    swept: list[str] = []
    requeuer = Requeuer(client)
    for queue in queues:
        token = uuid.uuid4().hex
        if not client.set(sweep_lock_key(queue), token, nx=True, px=int(lock_ttl * 1000)):
            continue
        try:
            swept += _sweep_queue(client, queue, requeuer)
        finally:
            client.eval(_RELEASE, 1, sweep_lock_key(queue), token)
    return swept


def _sweep_queue(client: redis.Redis, queue: str, requeuer: Requeuer) -> list[str]:
    registry = StartedJobRegistry(queue, connection=client, serializer=JSONSerializer)
    abandoned: list[Job] = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
        except NoSuchJobError:
            continue
        if JobStatus.parse(job.get_status(refresh=False)) is not JobStatus.STARTED or not job.worker_name:
            continue
        if client.exists(alive_key(job.worker_name)):
            continue
        # Score 0: only these entries are "expired" for the cleanup below, which is rq's own handling.
        client.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)
        abandoned.append(job)
    if not abandoned:
        return []
    registry.cleanup(timestamp=0)
    for job in abandoned:
        meta = job.get_meta(refresh=False) or {}
        metrics.JOBS_COMPLETED.labels(str(meta.get("controller", "")), str(meta.get("task", "")), "abandoned").inc()
        log.warning("job %s was abandoned by dead worker %s; %s", job.id, job.worker_name,
                    JobStatus.parse(job.get_status(refresh=True)).value)
        requeuer.requeue(job)
    return [job.id for job in abandoned]


def update_queue_depth(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    """Set ``shard_operator_job_queue_depth`` for each queue; returns the depths."""
    depths = {name: Queue(name, connection=client, serializer=JSONSerializer).count for name in queues}
    for name, depth in depths.items():
        metrics.JOB_QUEUE_DEPTH.labels(name).set(depth)
    return depths
