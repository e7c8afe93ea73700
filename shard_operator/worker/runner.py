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

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from shard_operator import metrics
from shard_operator.context import Context, JobQueue, ObjectCache, no_job_queue
from shard_operator.errors import ClaimLostError, ConfigError, ShutDownError, StorageError
from shard_operator.queue import Item, RateLimitingQueue
from shard_operator.reconcile import Reconciler, Request
from shard_operator.worker.outcome import Action, Decision, decide

if TYPE_CHECKING:
    from shard_operator.client import Client, EventRecorder
    from shard_operator.source import Resource

__all__ = ["ReconcileFn", "ShardWorker"]

log = logging.getLogger(__name__)


ReconcileFn = Reconciler  # the name the pool and the operator definition use


class _Unavailable:
    """Stands in for a context part of a worker started without it (tests of the loop itself): any use
    raises a :class:`~shard_operator.errors.ConfigError` naming the part. A manager always gives every part."""

    def __init__(self, part: str) -> None:
        self._part = part

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(f"ctx.{self._part}.{name}: this worker was started without a {self._part} "
                          "(a worker started by the manager always has one)")


class ShardWorker:
    """Consumes one shard's keys with ``threads`` concurrent loops until :meth:`stop`.

    ``get_timeout`` bounds each wait for a key, so a stop request is seen within that time. ``cache``,
    ``client``, ``recorder``, ``resource`` and ``jobs`` are the parts of each reconcile's
    :class:`~shard_operator.context.Context` (the manager gives all of them; ``jobs`` is None when the
    operator has no job queue, and a part left out raises ConfigError when a reconcile uses it). Redis
    failures are logged and retried with a capped backoff instead of ending the loop.
    """

    def __init__(self, queue: RateLimitingQueue, reconcile: Reconciler, *, controller: str, shard: str,
                 owner: str, threads: int = 1, get_timeout: float = 1.0, cache: ObjectCache | None = None,
                 client: Client | None = None, recorder: EventRecorder | None = None,
                 resource: Resource | None = None, jobs: JobQueue | None = None) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.queue, self.reconcile = queue, reconcile
        self.controller, self.shard, self.owner, self.threads = controller, shard, owner, threads
        self.get_timeout = get_timeout
        self._logger = logging.getLogger(f"shard_operator.{controller}")
        self._cache = cache if cache is not None else cast("ObjectCache", _Unavailable("cache"))
        self._client = client if client is not None else cast("Client", _Unavailable("client"))
        self._recorder = recorder if recorder is not None else cast("EventRecorder", _Unavailable("recorder"))
        self._resource = resource if resource is not None else cast("Resource", _Unavailable("resource"))
        self._jobs = jobs if jobs is not None else no_job_queue(controller)
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
            returned = self.reconcile(request, self.context_for(request))
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

    def context_for(self, request: Request) -> Context:
        """The context of one reconcile of ``request`` (about 1 µs: a plain slotted object)."""
        return Context(request=request, controller=self.controller, shard=self.shard, logger=self._logger,
                       cache=self._cache, client=self._client, recorder=self._recorder,
                       resource=self._resource, queue=self.queue, jobs=self._jobs)

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
