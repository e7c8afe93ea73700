"""The job worker: runs registered tasks for shard-operator's rq queues and reconciles their objects again.

Where it sits: :class:`~shard_operator.jobs.pool.JobWorkerPool` runs one :class:`JobWorker` per
process. rq dequeues a job and calls :func:`run_task` (the only function a job may name), which
looks the task up in the registry. After rq has *persisted* the attempt's outcome (succeeded,
failed, timed out, or re-queued for a retry) the worker adds the object's key to the controller's
work queue with the queue's own ``add``, so collapse and one-at-a-time still hold and the next
reconcile reads the new state. (rq's ``on_success``/``on_failure`` callbacks run *before* the status
is saved, so a reconcile they triggered could still read "started"; they are not used.)

What a job stored in Redis cannot make this worker do: import or call anything but :func:`run_task`
(a job naming another function is failed unrun), run an unregistered task, unpickle anything
(JSON only), run rq callbacks or send webhooks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from typing import Any

import redis
from rq import Queue
from rq.job import UNEVALUATED, Job
from rq.timeouts import JobTimeoutException
from rq.worker import SimpleWorker

from shard_operator import metrics
from shard_operator.errors import StorageError, UnregisteredTaskError
from shard_operator.jobs.enqueueing import TRAMPOLINE
from shard_operator.jobs.registry import TaskRegistry, default_registry
from shard_operator.jobs.serialization import JSONSerializer, check_json
from shard_operator.jobs.state import JobStatus
from shard_operator.keys import Keys, index_key
from shard_operator.queue import RateLimitingQueue
from shard_operator.storage import redis_errors

__all__ = ["JobWorker", "Requeuer", "refuse", "run_task", "use_registry"]

log = logging.getLogger(__name__)

REFUSE = "shard_operator.jobs.running.refuse"

_registry: TaskRegistry = default_registry


def use_registry(registry: TaskRegistry) -> None:
    """Make :func:`run_task` look tasks up in ``registry`` in this process (a job worker calls it)."""
    global _registry
    _registry = registry


def run_task(task_name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The trampoline every job names: run the registered task; its result must be JSON."""
    func = _registry.get(task_name)
    result = func(*args, **kwargs)
    check_json(result, f"the result of task {task_name!r}")
    return result


def refuse(reason: str) -> None:
    """What runs instead of a job that names anything but :func:`run_task`: it fails, nothing else."""
    raise UnregisteredTaskError(reason)


class Requeuer:
    """Adds a job's object key back to its controller's work queue, unless a newer job superseded it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._queues: dict[str, RateLimitingQueue] = {}

    def requeue(self, job: Job) -> bool:
        meta = _meta(job)
        controller, key, name = meta.get("controller"), meta.get("key"), meta.get("name")
        if not (isinstance(controller, str) and isinstance(key, str) and isinstance(name, str)):
            return False
        with redis_errors():
            current = self.client.hget(index_key(controller, key), name)
        if current is not None and json.loads(current).get("id") != job.id:
            return False  # a newer generation's job replaced it: its outcome is ignored
        queue = self._queues.get(controller)
        if queue is None:
            queue = self._queues[controller] = RateLimitingQueue(self.client, Keys.for_controller(controller),
                                                                 bucket=None)
        queue.add(key)
        return True


class JobWorker(SimpleWorker):
    """An rq worker that runs each job in its own process (no fork per job), JSON only, registered tasks only.

    A job's timeout is enforced with ``SIGALRM`` (rq's death penalty) in this process. A worker killed
    mid-job leaves the job "started"; :mod:`.sweeping` finds it by this worker's liveness key. A job
    whose payload or meta is not what :class:`~.enqueueing.Jobs` writes fails unrun; the worker goes on.
    ``stop``: the pool's stop event; set before rq installs its SIGTERM handler, the worker stops at once.
    """

    def __init__(self, queues: list[Queue], *, stop: threading.Event | None = None, **kwargs: Any) -> None:
        kwargs["serializer"] = JSONSerializer
        super().__init__(queues, **kwargs)
        self.requeuer = Requeuer(self.connection)
        self._stop = stop
        self._exc_type: type[BaseException] | None = None
        self._exc_text = ""

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if self._stop is not None and self._stop.is_set():  # a SIGTERM came before rq's handlers: stop now
            self._stop_requested = True

    def handle_exception(self, job: Job, *exc_info: Any) -> Any:
        self._exc_type = exc_info[0] if exc_info else None
        self._exc_text = "".join(traceback.format_exception(*exc_info))[-4000:] if exc_info else ""
        return super().handle_exception(job, *exc_info)

    def perform_job(self, job: Job, queue: Queue, execution: Any) -> bool:
        meta = _meta(job)
        controller, task = str(meta.get("controller", "")), str(meta.get("task", ""))
        refused = _disarm(job)
        self._exc_type = None
        metrics.JOBS_STARTED.labels(controller, task).inc()
        started = time.monotonic()
        try:
            return bool(super().perform_job(job, queue, execution))
        finally:
            metrics.JOB_DURATION.labels(controller, task).observe(time.monotonic() - started)
            try:
                outcome = "refused" if refused else self._outcome(job)
                metrics.JOBS_COMPLETED.labels(controller, task, outcome).inc()
                if outcome == "retried":  # rq keeps no result for an attempt it retries: the reconcile reads this
                    job.meta["last_error"] = self._exc_text
                    job.save_meta()
                self._requeue_with_retries(job)
            except Exception:  # the outcome is saved; the enqueuing reconcile's add_after backstop wakes the key
                log.exception("could not put the key of job %s back on its work queue", job.id)

    def _requeue_with_retries(self, job: Job, attempts: int = 5, first_delay: float = 0.1) -> None:
        """Put the job's key back, riding out a short Redis outage (0.1 + 0.2 + 0.4 + 0.8 s of retries)."""
        for attempt in range(attempts):
            try:
                self.requeuer.requeue(job)
                return
            except StorageError:
                if attempt == attempts - 1:
                    raise
                time.sleep(first_delay * 2**attempt)

    def _outcome(self, job: Job) -> str:
        status = JobStatus.parse(job.get_status(refresh=True))
        if status is JobStatus.FINISHED:
            return "succeeded"
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
            return "retried"
        if self._exc_type is not None and issubclass(self._exc_type, JobTimeoutException):
            return "timed_out"
        return "failed"


def _meta(job: Job) -> dict[str, Any]:
    """The job's meta, or ``{}`` when what Redis holds is not a JSON object (a malformed payload)."""
    try:
        meta = job.get_meta(refresh=False)
    except Exception:
        return {}
    return meta if isinstance(meta, dict) else {}


def _disarm(job: Job) -> bool:
    """Strip what a job could make rq do besides the trampoline; True if the job is refused outright."""
    job._success_callback_name = job._failure_callback_name = job._stopped_callback_name = None
    job._success_callback = job._failure_callback = job._stopped_callback = UNEVALUATED  # names unset: none run
    job.webhooks = []
    try:
        func_name, args = job.func_name, job.args
    except Exception as exc:  # a payload that is not our JSON: the job fails, the worker goes on
        reason = f"job {job.id} has a malformed payload ({type(exc).__name__}); it is not run"
    else:
        if func_name == TRAMPOLINE and isinstance(args, list | tuple) and len(args) == 3:
            job._instance = None
            return False
        reason = f"job {job.id} names {func_name!r}, not a registered task"
    job.func_name = REFUSE
    job._instance, job._args, job._kwargs = None, (reason,), {}
    return True
