"""Background jobs on RQ: slow work leaves the reconcile loop, and its outcome comes back as a reconcile
(docs/design.md §2.8).

A reconcile calls ``ctx.enqueue_job(task, *args, name=…, timeout=…, retry=…)`` (a :class:`JobsHandle`
bound to the object's key and generation) and returns at once; a job worker process runs the
registered task; when the attempt ends (success, failure, timeout, retry, or its worker died) the
object's key is added back to the work queue, and the next reconcile reads ``ctx.job(name)``::

    Jobs(redis, controller).for_request(key, generation) -> JobsHandle
        .enqueue_job(task, *args, **kwargs) -> JobRef     idempotent per (controller, key, generation, name)
        .job(name) -> JobState | None                    this generation's job only

Modules: :mod:`.registry` (tasks by name), :mod:`.serialization` (JSON only), :mod:`.enqueueing`
(the reconcile side), :mod:`.running` (the trampoline and the worker), :mod:`.sweeping` (abandoned
jobs), :mod:`.pool` (supervised worker processes), :mod:`.summary` (``shard-operator status``). The rq
queue and job ids are named in :mod:`shard_operator.keys` with every key.
"""

from shard_operator.jobs.enqueueing import Jobs, JobsHandle, read_state
from shard_operator.jobs.pool import JobWorkerPool, JobWorkerSpec, run_job_worker
from shard_operator.jobs.registry import TaskRegistry, default_registry, task
from shard_operator.jobs.serialization import JSONSerializer, check_json
from shard_operator.jobs.state import JobRef, JobState, JobStatus
from shard_operator.jobs.summary import ObjectJobs, format_summary, job_summary
from shard_operator.jobs.sweeping import sweep_abandoned, update_queue_depth

__all__ = [
    "JSONSerializer",
    "JobRef",
    "JobState",
    "JobStatus",
    "JobWorkerPool",
    "JobWorkerSpec",
    "Jobs",
    "JobsHandle",
    "ObjectJobs",
    "TaskRegistry",
    "check_json",
    "default_registry",
    "format_summary",
    "job_summary",
    "read_state",
    "run_job_worker",
    "sweep_abandoned",
    "task",
    "update_queue_depth",
]
