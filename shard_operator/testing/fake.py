"""Unit-testing a reconciler with neither Redis nor an API server.

A :class:`FakeContext` is a :class:`~shard_operator.context.Context` (the same type a reconciler is
annotated with, so ``mypy --strict`` accepts it) over parts in memory: the objects of each resource
(:mod:`.fake_api`), which ``ctx.get`` and ``ctx.cache`` read and ``ctx.client`` writes; the Events
``ctx.recorder`` records; the keys ``ctx.requeue`` (and the jobs' backstop) add; the jobs
``ctx.enqueue_job`` enqueues, whose end the test decides. Then it asserts on what the reconcile did::

    ctx = FakeContext(WIDGETS, Request("default", "w1"), objects={WIDGETS: [widget("w1", "default", size=3)]})
    assert reconcile(ctx.request, ctx) is None
    assert ctx.object(WIDGETS, "default/w1")["status"]["observedGeneration"] == 1
    ctx.fail_next_write(WIDGETS, "default/w1")      # the next write to it raises ConflictError
    ctx.lose_claim()                                 # every later write raises ClaimLost, as in a paused worker

``ctx.client`` is fenced and conditional as in a worker: a patch or delete carries the object's
``resourceVersion`` (unless ``unconditional=True``), so a reconcile that writes twice from the same read
object gets a ConflictError here too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shard_operator.client.events import EVENTS, EventRecorder
from shard_operator.client.fencing import FencedClient
from shard_operator.context import Claim, Context, JobQueue, ObjectJobs, no_job_queue
from shard_operator.errors import ApiError, ConflictError
from shard_operator.jobs.registry import default_registry
from shard_operator.jobs.serialization import check_json
from shard_operator.jobs.state import JobRef, JobState, JobStatus
from shard_operator.reconcile import Reconciler, Request, Result
from shard_operator.source.resource import Resource
from shard_operator.testing.fake_api import FakeCache, FakeClient, ObjectStore, Write

__all__ = ["FakeContext", "FakeJob", "FakeJobs", "FakeQueue", "RecordedEvent", "Requeue", "Write"]

_Object = dict[str, Any]


@dataclass(frozen=True)
class Requeue:
    """A key added to the work queue: now (``after`` 0) or after ``after`` seconds."""

    key: str
    after: float = 0.0


@dataclass(frozen=True)
class RecordedEvent:
    """An Event ``ctx.recorder`` recorded about the object ``key``."""

    type: str
    reason: str
    message: str
    key: str


class FakeQueue:
    """The work queue of a :class:`FakeContext`: records what is added, in order."""

    def __init__(self) -> None:
        self.added: list[Requeue] = []

    def add(self, key: str) -> bool:
        self.added.append(Requeue(key))
        return True

    def add_after(self, key: str, delay: float) -> bool:
        self.added.append(Requeue(key, delay))
        return True


@dataclass
class FakeJob:
    """A job enqueued through a :class:`FakeContext`, with the state ``ctx.job`` returns."""

    ref: JobRef
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None
    retry: int
    state: JobState = field(init=False)

    def __post_init__(self) -> None:
        ref = self.ref
        self.state = JobState(ref.id, ref.name, ref.task, ref.key, ref.generation, JobStatus.QUEUED)


class FakeJobs:
    """The job queue of a :class:`FakeContext` (:class:`~shard_operator.context.JobQueue`): enqueuing checks
    the task is registered and the arguments are JSON, as the real one does, and runs nothing."""

    def __init__(self, controller: str, *, default_timeout: float = 180.0) -> None:
        self.controller = controller
        self.default_timeout = default_timeout
        self.enqueued: list[FakeJob] = []
        self._by_id: dict[str, FakeJob] = {}

    def for_request(self, key: str, generation: int | str) -> ObjectJobs:
        return _ObjectJobs(self, key, str(generation))

    def end(self, key: str, name: str, status: JobStatus, **state: Any) -> None:
        """End the latest job ``name`` of ``key`` with ``status`` (and ``result=`` or ``error=``)."""
        for job in reversed(self.enqueued):
            if job.ref.key == key and job.ref.name == name:
                ref = job.ref
                job.state = JobState(ref.id, ref.name, ref.task, ref.key, ref.generation, status, **state)
                return
        raise LookupError(f"no job {name!r} was enqueued for {key}")


class _ObjectJobs:
    def __init__(self, jobs: FakeJobs, key: str, generation: str) -> None:
        self.jobs, self.key, self.generation = jobs, key, generation

    def enqueue_job(self, task: Any, *args: Any, name: str | None = None, timeout: float | None = None,
                    retry: int = 0, queue: str | None = None, **kwargs: Any) -> JobRef:
        task_name = default_registry.name_of(task)
        for index, arg in enumerate(args):
            check_json(arg, f"argument {index} of task {task_name!r}")
        check_json(kwargs, f"keyword arguments of task {task_name!r}")
        job_name = name or task_name
        jid = f"{self.jobs.controller}:{self.key}:{self.generation}:{job_name}"
        existing = self.jobs._by_id.get(jid)
        if existing is not None:
            return JobRef(jid, job_name, task_name, self.key, self.generation, queue or "fake", created=False)
        ref = JobRef(jid, job_name, task_name, self.key, self.generation, queue or "fake", created=True)
        job = FakeJob(ref, args, kwargs, timeout, retry)
        self.jobs._by_id[jid] = job
        self.jobs.enqueued.append(job)
        return ref

    def job(self, name: str) -> JobState | None:
        job = self.jobs._by_id.get(f"{self.jobs.controller}:{self.key}:{self.generation}:{name}")
        return job.state if job is not None else None


class FakeContext(Context):
    """A :class:`~shard_operator.context.Context` over objects in memory, for a reconcile of ``request``
    of ``resource`` (the primary resource); see the module docstring and :mod:`.fake_api` for what the
    fake API server does. ``objects`` are stored first, as :meth:`add` does. With ``jobs=False`` the
    operator has no job queue (``ctx.enqueue_job`` raises :class:`~shard_operator.NoJobQueueError`).
    """

    def __init__(self, resource: Resource, request: Request | str, *,
                 objects: Mapping[Resource, Iterable[_Object]] | None = None, controller: str = "fake",
                 shard: str = "fake-0", jobs: bool = True) -> None:
        store = ObjectStore()
        fake_client = FakeClient(store, field_manager=controller)
        request = request if isinstance(request, Request) else Request.from_key(request)
        client = FencedClient(fake_client, Claim.unbounded(request.key))
        queue = FakeQueue()
        fake_jobs = FakeJobs(controller)
        job_queue: JobQueue = fake_jobs if jobs else no_job_queue(controller)
        super().__init__(request=request, controller=controller, shard=shard,
                         logger=logging.getLogger(f"shard_operator.{controller}"),
                         cache=FakeCache(store), client=client, resource=resource, queue=queue, jobs=job_queue,
                         recorder=EventRecorder(client, controller, instance="fake"))
        self.store, self.fake_client, self.fake_queue, self.fake_jobs = store, fake_client, queue, fake_jobs
        for kind, items in (objects or {}).items():
            for obj in items:
                self.add(kind, obj)

    # -- the world before the reconcile ----------------------------------------------

    def add(self, resource: Resource, obj: _Object) -> _Object:
        """Store ``obj`` as if it had been created (a uid, resourceVersion and generation are added when
        missing) and return it as stored."""
        return self.store.put(resource, obj)

    def fail_next_write(self, resource: Resource, key: str, error: ApiError | None = None) -> None:
        """The next write (create, patch, delete) to ``key`` of ``resource`` raises ``error`` (default: a
        :class:`~shard_operator.errors.ConflictError`, as when another writer got there first)."""
        self.store.fail_next_write(resource, key, error or ConflictError(
            f"injected conflict on {resource.name} {key!r}", status=409, reason="Conflict"))

    def lose_claim(self) -> None:
        """From now on the claim is lost, as for a worker paused past its claim's deadline: every write
        through ``ctx.client``, ``ctx.recorder`` and ``ctx.enqueue_job`` raises
        :class:`~shard_operator.errors.ClaimLost` and changes nothing."""
        self.claim.lose()

    def run(self, reconciler: Reconciler, request: Request | None = None) -> Result | None:
        """Call ``reconciler`` for ``request`` (default: this context's) over the same objects and records."""
        if request is None or request == self.request:
            return reconciler(self.request, self)
        other = copy.copy(self)
        other.request = request
        return reconciler(request, other)

    # -- what the reconcile did ------------------------------------------------------

    def object(self, resource: Resource, key: str) -> _Object | None:
        """The object now (a copy), or None when it does not exist."""
        return self.store.get(resource, key)

    def objects(self, resource: Resource) -> list[_Object]:
        """Every object of ``resource`` now, sorted by key."""
        return FakeCache(self.store).list(resource)

    @property
    def writes(self) -> list[Write]:
        """Every successful create, patch and delete, in order (Events are in :attr:`events`)."""
        return list(self.store.writes)

    @property
    def events(self) -> list[RecordedEvent]:
        """The Events recorded, in order."""
        return [RecordedEvent(event["type"], event["reason"], event["message"], _involved_key(event))
                for event in self.store.of(EVENTS).values()]

    @property
    def requeues(self) -> list[Requeue]:
        """The keys added to the work queue (``ctx.requeue``, and the backstop of each new job)."""
        return list(self.fake_queue.added)

    @property
    def enqueued_jobs(self) -> list[FakeJob]:
        """The jobs enqueued, in order (an enqueue that returned an existing job adds none)."""
        return list(self.fake_jobs.enqueued)

    def finish_job(self, name: str, result: Any = None, *, request: Request | None = None) -> None:
        """The latest job ``name`` (of ``request``, default this one's) succeeded with ``result``."""
        self.fake_jobs.end((request or self.request).key, name, JobStatus.FINISHED, result=result)

    def fail_job(self, name: str, error: str, *, request: Request | None = None) -> None:
        """The latest job ``name`` failed with ``error`` (the last line of its exception)."""
        self.fake_jobs.end((request or self.request).key, name, JobStatus.FAILED, error=error)


def _involved_key(event: _Object) -> str:
    involved = event.get("involvedObject") or {}
    namespace = involved.get("namespace")
    return f"{namespace}/{involved['name']}" if namespace else str(involved["name"])
