"""The reconcile's context: everything a :class:`~shard_operator.reconcile.Reconciler` gets besides its
:class:`~shard_operator.reconcile.Request`.

Where it sits: a worker process (:mod:`shard_operator.worker.runner`) builds one :class:`Context` per
reconcile from the parts it created after the fork (the shared-cache reader, the API client, the event
recorder, the job queue binding) and hands it to the reconciler. Tests hand the same reconciler a
:class:`shard_operator.testing.FakeContext` instead, which is a :class:`Context` over in-memory parts.

Every field is always set: under the manager each is real, and a reconciler never checks for None. The
one capability an operator may lack is a job queue (it registered no task): then :meth:`Context.enqueue_job`
and :meth:`Context.job` raise :class:`NoJobQueueError`, a :class:`~shard_operator.errors.ConfigError`.

The reads and writes take the same :class:`~shard_operator.source.Resource` objects::

    widget = ctx.get(request)                                  # the primary object, from the shared cache
    owned = ctx.cache.list_owned(CONFIGMAPS, widget["metadata"]["uid"])
    ctx.client.create(CONFIGMAPS, configmap)                   # through the API server

Fencing (invariant I1): each context carries the worker's :class:`Claim` on the key. ``ctx.client``, the
Events of ``ctx.recorder`` and :meth:`Context.enqueue_job` check it before every write they send, and a
reconcile calls :meth:`Context.check_claim` before a side effect of its own; a lost claim raises
:class:`~shard_operator.errors.ClaimLost`, which aborts the reconcile and queues the key again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shard_operator.errors import ClaimLost, ConfigError
from shard_operator.reconcile import Request

if TYPE_CHECKING:
    from shard_operator.cache.selector import LabelSelector
    from shard_operator.client import EventRecorder, FencedClient
    from shard_operator.jobs import JobRef, JobState
    from shard_operator.source import Resource

__all__ = ["CLAIM_MARGIN", "Claim", "Context", "JobQueue", "NoJobQueueError", "ObjectCache", "ObjectJobs",
           "WorkQueue", "no_job_queue"]

_Object = dict[str, Any]
_Objects = list[_Object]
_Keys = list[str]


class NoJobQueueError(ConfigError):
    """``ctx.enqueue_job`` / ``ctx.job`` in an operator that registered no background task (so the
    manager started no job queue): register the task with ``@shard_operator.jobs.task(...)``."""


#: The part of the claim TTL a worker gives up at the end as a safety margin (see :class:`Claim`).
CLAIM_MARGIN = 0.1


class Claim:
    """The worker's claim on the key being reconciled, as far as the worker can tell without asking Redis.

    The queue hands a key out under a claim that lasts ``ttl`` seconds, and the worker's renewer extends
    it every ``ttl / 3``. ``confirmed_at`` is the monotonic time of the hand-out or of the last renew that
    succeeded (taken before that renew was sent). The claim counts as lost when ``lost`` was set (Redis
    answered a renew with "not yours") or when ``clock() > confirmed_at + ttl - margin``: past that
    instant the claim may have expired and the key may be another worker's. A process paused by SIGSTOP,
    a stalled thread or a partition sees that jump of the monotonic clock as soon as it runs again, before
    its renewer can learn anything. ``margin`` (default ``CLAIM_MARGIN * ttl``) covers the round trip of
    the hand-out or renew and a difference between this host's clock and the clock that reaps claims.

    :meth:`check` costs one clock read and no round trip; it raises :class:`ClaimLost` and the claim stays
    lost for the rest of the reconcile. ``Claim.unbounded(key)`` never expires (a reconcile outside a worker).
    """

    __slots__ = ("_clock", "confirmed_at", "key", "lost", "margin", "ttl")

    def __init__(self, key: str, ttl: float, margin: float | None = None, confirmed_at: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.key = key
        self.ttl = ttl
        self.margin = CLAIM_MARGIN * ttl if margin is None else margin
        self.confirmed_at = clock() if confirmed_at is None else confirmed_at
        self._clock = clock
        self.lost = False

    @classmethod
    def unbounded(cls, key: str) -> Claim:
        """A claim that is never lost unless :meth:`lose` is called (FakeContext, a reconcile run by hand)."""
        return cls(key, float("inf"), margin=0.0, confirmed_at=0.0)

    def held(self) -> bool:
        """True while the claim is still this worker's (checked locally, as :meth:`check` does)."""
        if not self.lost and self._clock() > self.confirmed_at + self.ttl - self.margin:
            self.lost = True
        return not self.lost

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless the claim is still held; call it before every write."""
        if self.lost or self._clock() > self.confirmed_at + self.ttl - self.margin:
            self.lost = True
            raise ClaimLost(f"the claim on {self.key!r} is lost (expired or taken over): not writing; "
                            "the key is queued again for its current owner")

    def confirm(self, at: float) -> None:
        """The claim was extended by a renew sent at monotonic time ``at``."""
        if at > self.confirmed_at:
            self.confirmed_at = at

    def lose(self) -> None:
        """The claim is gone (Redis said so, or a test says so): every later :meth:`check` raises."""
        self.lost = True


class ObjectCache(Protocol):
    """What ``ctx.cache`` reads: the objects of every watched resource, as the leader's watch last saw them.

    Objects are fresh plain dicts (changing one changes nothing); lists are sorted by key. ``key`` is
    ``namespace/name`` (``name`` for cluster-scoped objects). A resource the operator does not watch
    (``For``, ``Owns``, ``Watches``) reads as empty.
    """

    def get(self, resource: Resource, key: str) -> _Object | None:
        """The object, or None when the cache does not hold it (deleted, or not listed yet)."""
        ...

    def list(self, resource: Resource, namespace: str | None = None,
             label_selector: str | Mapping[str, str] | LabelSelector | None = None) -> _Objects:
        """The objects in ``namespace`` (None: all) whose labels match ``label_selector``."""
        ...

    def list_owned(self, resource: Resource, owner_uid: str) -> _Objects:
        """The objects whose ``ownerReferences`` name ``owner_uid``."""
        ...

    def keys(self, resource: Resource, namespace: str | None = None) -> _Keys:
        """The keys of the objects in ``namespace`` (None: all)."""
        ...


class WorkQueue(Protocol):
    """The part of this controller's work queue a reconcile may use: add a key now or later."""

    def add(self, key: str) -> bool: ...

    def add_after(self, key: str, delay: float) -> bool: ...


class ObjectJobs(Protocol):
    """The background jobs of one object at one generation (:class:`shard_operator.jobs.JobsHandle`)."""

    def enqueue_job(self, task: Any, *args: Any, name: str | None = None, timeout: float | None = None,
                    retry: int = 0, queue: str | None = None, **kwargs: Any) -> JobRef: ...

    def job(self, name: str) -> JobState | None: ...


class JobQueue(Protocol):
    """The controller's job queue (:class:`shard_operator.jobs.Jobs`), as a reconcile uses it."""

    @property
    def default_timeout(self) -> float: ...

    def for_request(self, key: str, generation: int | str) -> ObjectJobs: ...


class _NoJobQueue:
    """The job queue of an operator that has none: every use raises :class:`NoJobQueueError`."""

    def __init__(self, controller: str) -> None:
        self.controller = controller

    @property
    def default_timeout(self) -> float:
        raise self._error()

    def for_request(self, key: str, generation: int | str) -> ObjectJobs:
        raise self._error()

    def _error(self) -> NoJobQueueError:
        return NoJobQueueError(f"operator {self.controller!r} has no job queue: background jobs need a task "
                               "registered with @shard_operator.jobs.task(...) before the manager starts")


def no_job_queue(controller: str) -> JobQueue:
    """The ``jobs`` of a context whose operator has no job queue."""
    return _NoJobQueue(controller)


@dataclass(slots=True, kw_only=True)
class Context:
    """What one reconcile gets besides its :class:`Request`; a new one for every reconcile.

    - ``request``: the object being reconciled (the same as the reconciler's first argument).
    - ``controller``, ``shard``: the operator's name and the shard this worker serves.
    - ``logger``: the controller's logger.
    - ``cache``: reads of the shared cache (:class:`ObjectCache`), for every watched resource.
    - ``client``: writes through the API server, fenced and conditional, counted by verb
      (:class:`~shard_operator.client.FencedClient`): each write checks the claim first and carries the
      object's ``resourceVersion`` unless ``unconditional=True``; a stale write raises ``ConflictError`` and
      the key is retried.
    - ``recorder``: Kubernetes Events about objects (best effort: never raises, except ``ClaimLost``).
    - ``resource``: the primary resource (the ``For``), so :meth:`get` reads the request's object.

    - ``queue`` and ``jobs``: this controller's work queue and job queue, which a reconcile uses through
      :meth:`requeue`, :meth:`enqueue_job` and :meth:`job`.
    """

    request: Request
    controller: str
    shard: str
    logger: logging.Logger
    cache: ObjectCache
    client: FencedClient
    recorder: EventRecorder
    resource: Resource
    queue: WorkQueue
    jobs: JobQueue

    def get(self, request: Request) -> _Object | None:
        """``request``'s object of the primary resource from the shared cache; None when it is gone."""
        return self.cache.get(self.resource, request.key)

    @property
    def claim(self) -> Claim:
        """This worker's claim on the key (:class:`Claim`); ``ctx.client`` checks it before each write."""
        return self.client.claim

    def check_claim(self) -> None:
        """Raise :class:`~shard_operator.errors.ClaimLost` if this worker may no longer own the key.

        Call it right before a side effect outside Kubernetes (a cloud API call, a message, a file): it
        narrows the window in which a paused worker acts on a key another worker now owns, but cannot close
        it (the side effect may land after the claim is lost); make such effects idempotent.
        """
        self.client.claim.check()

    def requeue(self, request: Request | None = None, *, after: float = 0.0) -> None:
        """Add ``request`` (default: this reconcile's) to this controller's work queue, after ``after`` s.

        For this reconcile's own object, returning ``Result(requeue_after=…)`` is the usual way; this is for
        waking another object of the primary resource (``Request(namespace, name)``). Adding the key being
        reconciled now hands it out again once, after this reconcile.
        """
        if after < 0:
            raise ValueError("after must be >= 0")
        key = (request or self.request).key
        if after > 0:
            self.queue.add_after(key, after)
        else:
            self.queue.add(key)

    def enqueue_job(self, task: Any, *args: Any, name: str | None = None, timeout: float | None = None,
                    retry: int = 0, generation: int | None = None, **kwargs: Any) -> JobRef:
        """Run ``task(*args, **kwargs)`` as a background job of this reconcile's object and return at once.

        Idempotent per (object, generation, ``name``): enqueuing again returns the same job (``created``
        False). ``generation`` defaults to the cached object's ``metadata.generation``. When the job ends,
        the object's key comes back on the work queue; read the outcome with :meth:`job`. Arguments must be
        JSON (:class:`~shard_operator.errors.JobSerializationError`) and ``task`` registered
        (:class:`~shard_operator.errors.UnregisteredTaskError`); :class:`NoJobQueueError` when the operator
        has no job queue.
        """
        self.client.claim.check()
        jobs = self.jobs
        ref = jobs.for_request(self.request.key, self._generation(generation)).enqueue_job(
            task, *args, name=name, timeout=timeout, retry=retry, **kwargs)
        if ref.created:
            # Backstop: the job's end adds the key back; should that add be lost (the job worker died
            # between saving the outcome and the add), this reconcile still comes after the job's time
            # limit (every try of it) has passed.
            limit = timeout if timeout is not None else jobs.default_timeout
            self.queue.add_after(self.request.key, limit * (retry + 1) + 5.0)
        return ref

    def job(self, name: str, generation: int | None = None) -> JobState | None:
        """This generation's job called ``name``, or None if none was enqueued for it."""
        return self.jobs.for_request(self.request.key, self._generation(generation)).job(name)

    def _generation(self, generation: int | None) -> int:
        if generation is not None:
            return generation
        obj = self.get(self.request)
        return int((obj or {}).get("metadata", {}).get("generation") or 0)
