"""The job part of ``shard-operator status``: running, waiting and failed jobs, per object.

Reads rq's registries of the given queues (nothing is written) and groups their jobs by the
object key recorded in each job's meta. Jobs of other controllers, and jobs that are not
shard-operator's, are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shard_operator.jobs.enqueueing import read_state
from shard_operator.jobs.serialization import JSONSerializer
from shard_operator.jobs.state import JobState
from shard_operator.keys import DEFAULT_QUEUE
from shard_operator.storage import redis_errors

__all__ = ["ObjectJobs", "format_summary", "job_summary"]


@dataclass
class ObjectJobs:
    """The jobs of one object."""

    running: list[JobState] = field(default_factory=list)
    queued: list[JobState] = field(default_factory=list)
    failed: list[JobState] = field(default_factory=list)


def job_summary(client: redis.Redis, controller: str, queues: Iterable[str] = (DEFAULT_QUEUE,),
                limit: int = 1000) -> dict[str, ObjectJobs]:
    """Object key → its running, queued and failed jobs (at most ``limit`` of each kind per queue)."""
    summary: dict[str, ObjectJobs] = {}
    with redis_errors():
        for name in queues:
            queue = Queue(name, connection=client, serializer=JSONSerializer)
            kinds = {
                "running": StartedJobRegistry(name, connection=client, serializer=JSONSerializer).get_job_ids(
                    0, limit - 1, cleanup=False),
                "queued": queue.get_job_ids(0, limit - 1),
                "failed": FailedJobRegistry(name, connection=client, serializer=JSONSerializer).get_job_ids(
                    0, limit - 1, cleanup=False),
            }
            for kind, ids in kinds.items():
                for job in Job.fetch_many(list(dict.fromkeys(ids)), connection=client, serializer=JSONSerializer):
                    if job is None or (job.get_meta(refresh=False) or {}).get("controller") != controller:
                        continue
                    state = read_state(job)
                    getattr(summary.setdefault(state.key, ObjectJobs()), kind).append(state)
    return summary


def format_summary(summary: dict[str, ObjectJobs]) -> str:
    """Lines for a terminal: one per object with jobs, then one per running or failed job."""
    lines = []
    for key in sorted(summary):
        jobs = summary[key]
        lines.append(f"{key}: {len(jobs.running)} running, {len(jobs.queued)} queued, {len(jobs.failed)} failed")
        for state in jobs.running:
            lines.append(f"  running  {state.name} (generation {state.generation}) since {state.started_at}")
        for state in jobs.failed:
            lines.append(f"  failed   {state.name} (generation {state.generation}): {state.error or 'no error text'}")
    return "\n".join(lines) if lines else "no jobs"
