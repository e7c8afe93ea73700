"""The worker loop of one shard: claim a key, reconcile it, apply the outcome, release the claim.

Where it sits: a worker process (:mod:`.pool`) runs one :class:`ShardWorker` for its shard, with
``threads`` loops inside it for I/O-bound reconcilers (controller-runtime's MaxConcurrentReconciles).
A renewer thread extends the claims of in-flight keys every ``claim_ttl / 3`` seconds; a key whose
claim was lost (the worker stalled past its deadline and the key was handed to another worker) is
no longer treated as this worker's own: its outcome is dropped and ``done`` is not called.

Invariants this loop keeps: the queue hands a key to one claim at a time (I1); ``done`` always runs
for a key still claimed, so a change that arrived meanwhile is handed out again (I2, I3); errors go
through the rate limiter (I4).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shard_operator import metrics
from shard_operator.errors import ClaimLostError, ShutDownError, StorageError
from shard_operator.queue import Item, RateLimitingQueue
from shard_operator.reconcile import Request, Result
from shard_operator.worker.outcome import Action, Decision, decide

if TYPE_CHECKING:
    from shard_operator.cache import CacheReader
    from shard_operator.client import Client, EventRecorder
    from shard_operator.jobs import JobRef, Jobs, JobsHandle, JobState
    from shard_operator.source import Resource

__all__ = ["Context", "ReconcileFn", "ShardWorker"]

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a reconcile gets besides its :class:`Request`.

    Under the manager, ``cache`` reads the shared cache (every watched resource, by its
    ``Resource.name``), ``client`` writes through the API with optimistic concurrency (counted by
    verb), ``recorder`` records Kubernetes Events and ``resource`` is the primary resource, so
    :meth:`get` reads the request's object; :meth:`enqueue_job` and :meth:`job` run slow work as
    background jobs of the request's object (``jobs``). ``request`` is the request being reconciled: each
    reconcile gets its own copy of the context. Anything in ``extra`` is also an attribute.
    """

    controller: str
    shard: str
    queue: RateLimitingQueue
    logger: logging.Logger
    extra: dict[str, Any]
    cache: CacheReader | None = None
    client: Client | None = None
    recorder: EventRecorder | None = None
    resource: Resource | None = None
    jobs: Jobs | None = None
    request: Request | None = None

    def __post_init__(self) -> None:
        # ``extra`` may provide any field left unset (tests and authors inject a cache or jobs this way).
        for name in ("cache", "client", "recorder", "resource", "jobs"):
            if getattr(self, name) is None and name in self.extra:
                setattr(self, name, self.extra[name])

    def enqueue_job(self, task: Any, *args: Any, name: str | None = None, timeout: float | None = None,
                    retry: int = 0, generation: int | None = None, **kwargs: Any) -> JobRef:
        """Run ``task(*args, **kwargs)`` as a background job of this reconcile's object and return at once.

        Idempotent per (object, generation, ``name``): enqueuing again returns the same job. When it ends,
        the object's key comes back on the work queue; read the outcome with :meth:`job`. Arguments must be
        JSON (:class:`~shard_operator.errors.JobSerializationError` otherwise) and ``task`` registered.
        """
        ref = self._jobs_handle(generation).enqueue_job(task, *args, name=name, timeout=timeout, retry=retry,
                                                        **kwargs)
        if ref.created and self.request is not None and self.jobs is not None:
            # Backstop: the job's end adds the key back; should that add be lost (the job worker died
            # between saving the outcome and the add), this reconcile still comes after the job's time
            # limit (every try of it) has passed.
            limit = timeout if timeout is not None else self.jobs.default_timeout
            self.queue.add_after(self.request.key, limit * (retry + 1) + 5.0)
        return ref

    def job(self, name: str, generation: int | None = None) -> JobState | None:
        """This generation's job called ``name`` (None if none was enqueued for it)."""
        return self._jobs_handle(generation).job(name)

    def _jobs_handle(self, generation: int | None) -> JobsHandle:
        if self.jobs is None or self.request is None:
            raise RuntimeError("background jobs need a worker started by the manager (or a context with jobs)")
        if generation is None:
            obj = self.get(self.request) if self.cache is not None else None
            generation = int((obj or {}).get("metadata", {}).get("generation") or 0)
        return self.jobs.for_request(self.request.key, generation)

    def get(self, request: Request) -> dict[str, Any] | None:
        """The request's object of the primary resource from the shared cache; None when it is gone."""
        if self.cache is None or self.resource is None:
            raise RuntimeError("this context has no shared cache (the worker was not started by a manager)")
        return self.cache.get(self.resource.name, request.key)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["extra"][name]
        except KeyError:
            raise AttributeError(name) from None


ReconcileFn = Callable[[Request, Context], "Result | None"]


class ShardWorker:
    """Consumes one shard's keys with ``threads`` concurrent loops until :meth:`stop`.

    ``get_timeout`` bounds each wait for a key, so a stop request is seen within that time. ``context``
    sets the :class:`Context` fields ``cache``, ``client``, ``recorder`` and ``resource``. Redis
    failures are logged and retried with a capped backoff instead of ending the loop.
    """

    def __init__(self, queue: RateLimitingQueue, reconcile: ReconcileFn, *, controller: str, shard: str,
                 owner: str, threads: int = 1, get_timeout: float = 1.0,
                 context_extra: dict[str, Any] | None = None, **context: Any) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.queue, self.reconcile = queue, reconcile
        self.controller, self.shard, self.owner, self.threads = controller, shard, owner, threads
        self.get_timeout = get_timeout
        self.context = Context(controller, shard, queue, logging.getLogger(f"shard_operator.{controller}"),
                               dict(context_extra or {}), **context)
        self._stop = threading.Event()
        self._renewer_stop = threading.Event()  # set once every loop has returned
        self._inflight: dict[tuple[str, str], tuple[Item, float]] = {}
        self._lost: set[tuple[str, str]] = set()  # (key, token): tokens repeat after Redis loses its data
        self._lock = threading.Lock()
        self._labels = (controller,)

    # -- lifecycle -----------------------------------------------------------------

    def run(self) -> None:
        """Run the loops and the renewer until :meth:`stop`; returns after in-flight keys are done."""
        loops = [threading.Thread(target=self._loop, name=f"reconcile-{i}", daemon=True)
                 for i in range(self.threads)]
        renewer = threading.Thread(target=self._renew_loop, name="claim-renewer", daemon=True)
        renewer.start()
        for thread in loops:
            thread.start()
        for thread in loops:
            thread.join()
        self._renewer_stop.set()
        renewer.join()

    def stop(self) -> None:
        """Ask every loop to finish its current key and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------

    def _loop(self) -> None:
        item: Item | None = None
        failures = 0
        while True:
            try:
                if item is None:
                    if self._stop.is_set():
                        return
                    item = self.queue.get(self.shard, self.owner, timeout=self.get_timeout)
                    if item is None:
                        continue
                decision = self._reconcile(item)
                item = self._finish(item, decision)
                failures = 0
            except ShutDownError:
                return
            except StorageError as exc:
                failures += 1
                delay = min(0.05 * 2 ** failures, 5.0)
                log.warning("redis error in shard %s (retry in %.2fs): %s", self.shard, delay, exc)
                # The claim (if any) is still ours or will expire; either way the key is not lost.
                item = None
                self._stop.wait(delay)

    def _reconcile(self, item: Item) -> Decision:
        metrics.QUEUE_DURATION.labels(self.controller).observe(max(0.0, item.claimed_at - item.enqueued_at))
        active = metrics.ACTIVE_WORKERS.labels(self.controller)
        active.inc()
        started = time.monotonic()
        with self._lock:
            self._inflight[(item.key, item.token)] = (item, started)
        try:
            request = Request.from_key(item.key)
            returned = self.reconcile(request, dataclasses.replace(self.context, request=request))
            decision = decide(returned=returned)
        except Exception as exc:  # every reconcile failure goes through the outcome switch
            decision = decide(raised=exc)
            if not decision.terminal:
                log.debug("reconcile of %s failed: %r", item.key, exc)
            else:
                log.info("reconcile of %s failed terminally: %s", item.key, exc)
        finally:
            elapsed = time.monotonic() - started
            active.dec()
            metrics.RECONCILE_TIME.labels(self.controller).observe(elapsed)
            metrics.QUEUE_WORK_DURATION.labels(self.controller).observe(elapsed)
        return decision

    def _finish(self, item: Item, decision: Decision) -> Item | None:
        """Apply ``decision`` and release the claim; returns the next item when it came in the same trip."""
        with self._lock:
            self._inflight.pop((item.key, item.token), None)
            lost = (item.key, item.token) in self._lost
            self._lost.discard((item.key, item.token))
        metrics.RECONCILE_TOTAL.labels(self.controller, decision.result).inc()
        if decision.error:
            metrics.RECONCILE_ERRORS.labels(self.controller).inc()
        if decision.terminal:
            metrics.TERMINAL_RECONCILE_ERRORS.labels(self.controller).inc()
        if lost:
            log.warning("claim on %s was lost during its reconcile; leaving it to its new owner", item.key)
            return None
        self._apply(item.key, decision)
        # Success forgets the key's failures inside the done script: one round trip per reconcile.
        forget = decision.action is Action.FORGET
        try:
            if self._stop.is_set():
                self.queue.done(item, forget=forget)
                return None
            return self.queue.done_and_get(item, timeout=0, forget=forget)
        except ClaimLostError:
            log.warning("claim on %s expired before done; its new owner handles it", item.key)
            return None

    def _apply(self, key: str, decision: Decision) -> None:
        queue = self.queue
        if decision.action is Action.FORGET:
            return  # done(forget=True) resets the failures in the same round trip
        if decision.action is Action.REQUEUE_AFTER:
            queue.forget(key)
            queue.add_after(key, decision.delay)
        elif decision.action is Action.RETRY_AFTER:
            # At least the key's own backoff (which also counts the failure): TemporaryError(delay=0)
            # in a loop must back off like any other failure, not take every hand-out (I4).
            metrics.QUEUE_RETRIES.labels(self.controller).inc()
            queue.add_after(key, max(decision.delay, queue.rate_limiter.when(key)))
        else:
            metrics.QUEUE_RETRIES.labels(self.controller).inc()
            queue.add_rate_limited(key)

    # -- claims --------------------------------------------------------------------

    def _renew_loop(self) -> None:
        interval = max(self.queue.claim_ttl / 3.0, 0.01)
        while not self._renewer_stop.wait(interval):
            with self._lock:
                items = [item for item, _ in self._inflight.values()]
                oldest = min((started for _, started in self._inflight.values()), default=None)
            now = time.monotonic()
            metrics.QUEUE_LONGEST_RUNNING.labels(self.controller).set(0.0 if oldest is None else now - oldest)
            metrics.QUEUE_UNFINISHED_WORK.labels(self.controller).set(
                sum(now - started for started in self._started_times()))
            for item in items:
                try:
                    self.queue.renew(item)
                except ClaimLostError:
                    with self._lock:
                        if (item.key, item.token) in self._inflight:
                            self._lost.add((item.key, item.token))
                except StorageError as exc:
                    log.warning("could not renew the claim on %s: %s", item.key, exc)

    def _started_times(self) -> list[float]:
        with self._lock:
            return [started for _, started in self._inflight.values()]
