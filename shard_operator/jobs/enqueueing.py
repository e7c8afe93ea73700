"""Enqueue background jobs from a reconcile and read their state in a later one (docs/design.md §2.8).

Where it sits: the worker's reconcile context binds one :class:`JobsHandle` per request
(``Jobs.for_request(key, generation)``) and exposes ``ctx.enqueue_job`` / ``ctx.job``. A job is
identified by (controller, object key, generation, job name), so a reconcile can call
``enqueue_job`` every time it runs: while that job exists the same job is returned; a new
generation gets a new job and the previous generation's job is cancelled if it has not started
(if it is running its outcome is ignored: ``job(name)`` only ever reads the current generation).
Job workers (:mod:`.running`) put the key back on the work queue when a job ends.

Only the job worker runs code; this side writes JSON and reads state, and never imports a task.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.results import Result as RqResult

from shard_operator import metrics
from shard_operator.jobs.registry import TaskRegistry, default_registry
from shard_operator.jobs.serialization import JSONSerializer, check_json
from shard_operator.jobs.state import JobRef, JobState, JobStatus
from shard_operator.keys import DEFAULT_QUEUE, index_key, job_id
from shard_operator.storage import redis_errors

__all__ = ["TRAMPOLINE", "Jobs", "JobsHandle", "read_state"]

#: The one function an rq job of shard-operator names; it runs the registered task by name.
TRAMPOLINE = "shard_operator.jobs.running.run_task"

DAY = 24 * 3600


class Jobs:
    """The jobs of one controller: enqueue, read, supersede. Cheap to create; safe to share across forks.

    ``redis`` is a client or a URL (a URL is connected lazily, once per process). ``default_timeout``
    bounds a job's run time in seconds (rq kills it with ``JobTimeoutException``); finished and failed
    jobs are kept ``result_ttl`` / ``failure_ttl`` seconds, during which enqueuing the same job again
    returns it instead of running it again.
    """

    def __init__(self, redis_client: redis.Redis | str, controller: str, *, registry: TaskRegistry | None = None,
                 queue: str = DEFAULT_QUEUE, default_timeout: float = 180.0, result_ttl: int = DAY,
                 failure_ttl: int = 7 * DAY) -> None:
        self._url = redis_client if isinstance(redis_client, str) else None
        self._client = None if isinstance(redis_client, str) else redis_client
        self._pid = os.getpid()
        self.controller, self.registry, self.queue = controller, registry or default_registry, queue
        self.default_timeout, self.result_ttl, self.failure_ttl = default_timeout, result_ttl, failure_ttl
        index_key(controller, "x")  # validates the controller name now

    @property
    def client(self) -> redis.Redis:
        if self._url is not None and (self._client is None or self._pid != os.getpid()):
            self._client, self._pid = redis.Redis.from_url(self._url), os.getpid()
        assert self._client is not None
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._url is not None:
            state["_client"] = None  # reconnect in the process that unpickles it
        return state

    def for_request(self, key: str, generation: int | str) -> JobsHandle:
        """The handle a reconcile of ``key`` at ``generation`` uses (``ctx.enqueue_job``, ``ctx.job``)."""
        return JobsHandle(self, key, str(generation))

    # -- enqueue -------------------------------------------------------------------

    def enqueue(self, key: str, generation: int | str, task: Any, *args: Any, name: str | None = None,
                timeout: float | None = None, retry: int = 0, queue: str | None = None, **kwargs: Any) -> JobRef:
        """Enqueue ``task(*args, **kwargs)`` for the object, or return its existing job; see the module doc.

        Raises :class:`~shard_operator.errors.UnregisteredTaskError` for a task not in the registry and
        :class:`~shard_operator.errors.JobSerializationError` for arguments that are not JSON.
        """
        task_name = self.registry.name_of(task)
        for index, arg in enumerate(args):
            check_json(arg, f"argument {index} of task {task_name!r}")
        check_json(kwargs, f"keyword arguments of task {task_name!r}")
        if retry < 0:
            raise ValueError("retry must be >= 0")
        generation, job_name, queue_name = str(generation), name or task_name, queue or self.queue
        jid = job_id(self.controller, key, generation, job_name)
        with redis_errors():
            previous = self.client.hget(index_key(self.controller, key), job_name)
            if previous is not None:
                old_id = json.loads(previous)["id"]
                if old_id != jid:
                    self._supersede(old_id, task_name)
            existing = self._fetch(jid)
            if existing is not None and JobStatus.parse(existing.get_status(refresh=False)) is not JobStatus.CANCELED:
                self._index(key, job_name, jid, generation)
                return JobRef(jid, job_name, task_name, key, generation, existing.origin, created=False)
            if existing is not None:
                existing.delete()
            seconds = self.default_timeout if timeout is None else timeout
            if seconds <= 0:
                raise ValueError("timeout must be > 0")
            meta = {"controller": self.controller, "key": key, "generation": generation, "name": job_name,
                    "task": task_name}
            Queue(queue_name, connection=self.client, serializer=JSONSerializer).enqueue_call(
                TRAMPOLINE, args=[task_name, list(args), kwargs], timeout=math.ceil(seconds),
                result_ttl=self.result_ttl, failure_ttl=self.failure_ttl, job_id=jid, meta=meta,
                retry=Retry(max=retry) if retry else None, description=f"{task_name} for {key} generation {generation}")
            self._index(key, job_name, jid, generation)
        metrics.JOBS_ENQUEUED.labels(self.controller, task_name).inc()
        return JobRef(jid, job_name, task_name, key, generation, queue_name, created=True)

    def _index(self, key: str, job_name: str, jid: str, generation: str) -> None:
        name = index_key(self.controller, key)
        pipe = self.client.pipeline()
        pipe.hset(name, job_name, json.dumps({"id": jid, "generation": generation}))
        pipe.expire(name, max(self.result_ttl, self.failure_ttl) + math.ceil(self.default_timeout))
        pipe.execute()

    def _supersede(self, old_id: str, task_name: str) -> None:
        old = self._fetch(old_id)
        if old is None or JobStatus.parse(old.get_status(refresh=False)) not in (
                JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            return  # done, gone, or running: its outcome is ignored, the index now names the new job
        try:
            old.cancel()
        except InvalidJobOperation:
            return
        metrics.JOBS_COMPLETED.labels(self.controller, task_name, "canceled").inc()

    def _fetch(self, jid: str) -> Job | None:
        try:
            return Job.fetch(jid, connection=self.client, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    # -- read ----------------------------------------------------------------------

    def state(self, key: str, name: str, generation: int | str | None = None) -> JobState | None:
        """The state of the object's job ``name``; None if there is none (for ``generation``, if given)."""
        with redis_errors():
            entry = self.client.hget(index_key(self.controller, key), name)
            if entry is None:
                return None
            indexed = json.loads(entry)
            if generation is not None and indexed["generation"] != str(generation):
                return None  # a job of another generation: its outcome is not this reconcile's
            job = self._fetch(indexed["id"])
            return None if job is None else read_state(job)

    def states(self, key: str) -> dict[str, JobState]:
        """Every current job of the object, by job name."""
        with redis_errors():
            names = [raw.decode() for raw in self.client.hkeys(index_key(self.controller, key))]
        return {name: state for name in names if (state := self.state(key, name)) is not None}


class JobsHandle:
    """The jobs of one object at one generation, bound for a reconcile (``ctx.enqueue_job``, ``ctx.job``)."""

    def __init__(self, jobs: Jobs, key: str, generation: str) -> None:
        self.jobs, self.key, self.generation = jobs, key, generation

    def enqueue_job(self, task: Any, *args: Any, name: str | None = None, timeout: float | None = None,
                    retry: int = 0, queue: str | None = None, **kwargs: Any) -> JobRef:
        """See :meth:`Jobs.enqueue`; task keyword arguments named like these options cannot be passed."""
        return self.jobs.enqueue(self.key, self.generation, task, *args, name=name, timeout=timeout, retry=retry,
                                 queue=queue, **kwargs)

    def job(self, name: str) -> JobState | None:
        """The state of this generation's job ``name`` (a job name defaults to its task name), or None."""
        return self.jobs.state(self.key, name, self.generation)


def read_state(job: Job) -> JobState:
    """A :class:`JobState` from an rq job of shard-operator (its meta says whose job it is)."""
    meta = job.get_meta(refresh=False) or {}
    status = JobStatus.parse(job.get_status(refresh=False))
    result = error = trace = None
    if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.QUEUED):
        latest = job.latest_result()
        if latest is not None and latest.type == RqResult.Type.SUCCESSFUL:
            result = latest.return_value
        elif latest is not None and latest.exc_string:
            trace = latest.exc_string
            error = trace.strip().splitlines()[-1] if trace.strip() else None
    if trace is None and isinstance(meta.get("last_error"), str) and meta["last_error"].strip():
        trace = meta["last_error"]  # the error of an attempt that is being retried
        error = trace.strip().splitlines()[-1]
    return JobState(id=job.id, name=str(meta.get("name", "")), task=str(meta.get("task", "")),
                    key=str(meta.get("key", "")), generation=str(meta.get("generation", "")), status=status,
                    result=result, error=error, traceback=trace, retries_left=job.retries_left,
                    enqueued_at=job.enqueued_at, started_at=job.started_at, ended_at=job.ended_at,
                    worker=job.worker_name or None)

