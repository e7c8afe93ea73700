"""The worker loop of one shard: claim a key, reconcile it, apply the outcome, release the claim.

Where it sits: a worker process (:mod:`.pool`) runs one :class:`ShardWorker` for its shard, with
``threads`` loops inside it for I/O-bound reconcilers (controller-runtime's MaxConcurrentReconciles).
A renewer thread extends the claims of in-flight keys every ``claim_ttl / 3`` seconds.

Fencing (I1): each in-flight key has a :class:`~shard_operator.context.Claim` that knows, from the
monotonic clock alone, when the claim may have expired. The reconcile's ``ctx.client`` (a
:class:`~shard_operator.client.FencedClient`), its Events and its job enqueues check it before every
write, and the loop checks it again before applying the outcome. A reconcile whose claim was lost is
aborted (``ClaimLost``), writes nothing more, and its key is added again, so the key's current owner (or
this worker, later) reconciles the latest spec.

A key outside the namespaces the leader watches now (:class:`~shard_operator.cache.scope.ScopeReader`),
or outside this process's own ``namespaces`` (the published scope may still be an older leader's, wider
one, until this run's leader publishes its own), is done without a reconcile. A key taken before the
leader's first list with this process's own label and field selectors is in the cache (a restart with a
narrower selector: the cache still holds the previous run's objects) is not reconciled yet: it is added
back after :data:`SELECTOR_WAIT` seconds, its failures kept, with a log line at most every
:data:`SELECTOR_WAIT_LOG_INTERVAL` seconds (see :mod:`shard_operator.cache.scope`). Both checks are in
``_reconcile``, the per-key path of both loops. Every log line of a reconcile carries its controller
and key (:func:`shard_operator.logs.log_context`).

Errors are visible (:mod:`.reporting`): logged at ERROR with the traceback, a ``ReconcileError`` Warning
Event on the object, and the last error of a retrying key in ``<prefix>:errors``; success clears it.

Invariants this loop keeps: the queue hands a key to one claim at a time (I1); ``done`` always runs
for a key still claimed, so a change that arrived meanwhile is handed out again (I2, I3); errors go
through the rate limiter (I4).

Batch mode (``batch`` > 1): one coordinating loop claims up to min(``batch``, idle threads) keys with
one script call (``claim_batch``), runs each on a thread pool of ``threads``, and releases the keys
that finished together with the next claim (``done_batch_and_claim``), so a batch of reconciles costs
one Redis call instead of one per key. The invariants hold unchanged because nothing about a key
changes by coming in a batch: each key is claimed by the same per-key transition as ``get`` (dirty and
not processing, its own token and deadline; I1), renewed and fenced on its own while it runs, its
outcome applied by the same switch before the release (I4), and released by the same per-key DONE
transition, which queues it again if it became dirty meanwhile (I2, I3). A key whose release was
refused (claim lost) is added again, as in the one-key loop; a Redis error keeps the finished keys
for the next release, and a dead worker's batch is released by the pool (``release_owner``) or reaped.
Idle threads are filled when a reconcile finishes or within ``get_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast

from shard_operator import logs, metrics
from shard_operator.cache.scope import Scope, ScopeReader, Selectors
from shard_operator.client.fencing import FencedClient
from shard_operator.context import CLAIM_MARGIN, Claim, Context, JobQueue, ObjectCache, no_job_queue
from shard_operator.errors import ClaimLost, ClaimLostError, ConfigError, ShutDownError, StorageError
from shard_operator.queue import Item, RateLimitingQueue
from shard_operator.reconcile import Reconciler, Request
from shard_operator.worker.outcome import Action, Decision, decide
from shard_operator.worker.reporting import ErrorReporter

if TYPE_CHECKING:
    from shard_operator.client import Client, EventRecorder
    from shard_operator.source import Resource

__all__ = ["SELECTOR_WAIT", "SELECTOR_WAIT_LOG_INTERVAL", "ReconcileFn", "ShardWorker"]

log = logging.getLogger(__name__)

#: Seconds a key waits, unreconciled, for the leader's first list with this process's selectors.
SELECTOR_WAIT = 1.0
#: The least seconds between two log lines saying that keys wait for that list.
SELECTOR_WAIT_LOG_INTERVAL = 30.0


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

    ``monotonic`` is the clock of the claims (tests step a fake one); ``claim_margin`` the seconds given up
    at the end of each claim (default: :data:`~shard_operator.context.CLAIM_MARGIN` of the TTL);
    ``error_log_interval`` the least time between two tracebacks (and Events) of one key's errors.
    ``namespaces`` are the ones this process was configured to watch (None: all); a key outside them, or
    outside the scope the leader published, is done without a reconcile. ``selectors`` are the label and
    field selectors this process lists the primary resource with (None: not checked, for a worker started
    outside a manager); a key is reconciled only once the leader has published that its first list with
    them is in the cache, and added back after :data:`SELECTOR_WAIT` seconds until then.
    """

    def __init__(self, queue: RateLimitingQueue, reconcile: Reconciler, *, controller: str, shard: str,
                 owner: str, threads: int = 1, batch: int = 1, get_timeout: float = 1.0,
                 cache: ObjectCache | None = None,
                 client: Client | None = None, recorder: EventRecorder | None = None,
                 resource: Resource | None = None, jobs: JobQueue | None = None,
                 monotonic: Callable[[], float] = time.monotonic, claim_margin: float | None = None,
                 error_log_interval: float = 60.0, namespaces: Iterable[str] | None = None,
                 selectors: Selectors | None = None) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.batch = batch
        self.queue, self.reconcile = queue, reconcile
        self.controller, self.shard, self.owner, self.threads = controller, shard, owner, threads
        self.get_timeout = get_timeout
        self._logger = logging.getLogger(f"shard_operator.{controller}")
        self._cache = cache if cache is not None else cast("ObjectCache", _Unavailable("cache"))
        self._client = client if client is not None else cast("Client", _Unavailable("client"))
        self._recorder = recorder  # bound to each reconcile's fenced client
        self._no_recorder = cast("EventRecorder", _Unavailable("recorder"))
        self._resource = resource if resource is not None else cast("Resource", _Unavailable("resource"))
        self._jobs = jobs if jobs is not None else no_job_queue(controller)
        self._stop = threading.Event()
        self._renewer_stop = threading.Event()  # set once every loop has returned
        self._monotonic = monotonic
        self._claim_ttl = queue.claim_ttl
        self._margin = CLAIM_MARGIN * queue.claim_ttl if claim_margin is None else claim_margin
        self._inflight: dict[tuple[str, str], tuple[Item, float, Claim]] = {}
        self._lock = threading.Lock()
        self._requeue: list[str] = []  # batch mode: keys of lost claims whose add failed, added next release
        self.errors = ErrorReporter(queue.client, queue.keys.errors, cache=self._cache,
                                    resource=self._resource, interval=error_log_interval, monotonic=monotonic)
        self._labels = (controller,)
        self._scope = ScopeReader(queue.client, controller)
        self._own_scope = Scope.of(namespaces)
        self._selectors = selectors
        self._waiting_logged_at = float("-inf")

    # -- lifecycle -----------------------------------------------------------------

    def run(self) -> None:
        """Run the loops and the renewer until :meth:`stop`; returns after in-flight keys are done."""
        if self.batch > 1:
            loops = [threading.Thread(target=self._batch_loop, name="reconcile-batch", daemon=True)]
        else:
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
                item = self._finish(item, *self._reconcile(item))
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

    def _batch_loop(self) -> None:
        """Claim, reconcile on ``threads`` threads, release together; see the module docstring."""
        running: set[Future[tuple[Item, bool] | None]] = set()
        finished: list[tuple[Item, bool]] = []
        failures, full = 0, False
        with ThreadPoolExecutor(self.threads, thread_name_prefix=f"reconcile-{self.shard}") as pool:
            while True:
                stopping = self._stop.is_set()
                if stopping and not running and not finished:
                    return
                want = 0 if stopping else min(self.batch, self.threads - len(running))
                if finished or want:
                    timeout = self.get_timeout if not running and not finished else 0.0
                    try:
                        items = self._release_and_claim(finished, want, timeout)
                        finished, failures = [], 0
                    except ShutDownError:
                        finished, items = [], []  # released before the queue refused the claim
                        self._stop.set()
                    except StorageError as exc:  # the finished claims are kept for the next release
                        failures += 1
                        delay = min(0.05 * 2 ** failures, 5.0)
                        log.warning("redis error in shard %s (retry in %.2fs): %s", self.shard, delay, exc)
                        items = []
                        if stopping:  # give up on stop: the claims expire, or the pool releases them
                            finished = []
                        self._stop.wait(delay)
                    full = want > 0 and len(items) == want
                    running.update(pool.submit(self._work, item) for item in items)
                if running:
                    # More keys are probably waiting when the last claim was full: look again soon.
                    wait_for = 0.01 if full and len(running) < self.threads else self.get_timeout
                    done, running = wait(running, timeout=wait_for, return_when=FIRST_COMPLETED)
                    finished += [outcome for future in done if (outcome := future.result()) is not None]

    def _release_and_claim(self, finished: list[tuple[Item, bool]], want: int, timeout: float) -> list[Item]:
        """Release the finished items (``done`` with their forget flags) and claim up to ``want``, one trip."""
        items = [item for item, _ in finished]
        released, claimed = self.queue.done_batch_and_claim(items, self.shard, self.owner, want, timeout,
                                                            forget=[forget for _, forget in finished])
        for item, held in zip(items, released, strict=True):
            if not held:
                log.warning("claim on %s expired before done; queuing it again for its new owner", item.key)
                self._requeue.append(item.key)
        # A failed add must not lose the keys just claimed (they still run); it is tried again next time.
        keys, self._requeue = self._requeue, []
        for index, key in enumerate(keys):
            try:
                self.queue.add(key)
            except StorageError as exc:
                log.warning("could not queue %s again yet (retried at the next release): %s", key, exc)
                self._requeue = keys[index:]
                break
        return claimed

    def _work(self, item: Item) -> tuple[Item, bool] | None:
        """Reconcile ``item`` and apply its outcome (a pool thread); (item, forget) to release, or None."""
        try:
            forget = self._settle(item, *self._reconcile(item))
        except StorageError as exc:  # the claim is still ours or will expire; either way the key is not lost
            log.warning("redis error in shard %s while finishing %s: %s", self.shard, item.key, exc)
            return None
        return None if forget is None else (item, forget)

    def _reconcile(self, item: Item) -> tuple[Decision, Claim, Context | None, BaseException | None]:
        started = self._monotonic()  # the claim was taken (or renewed) a round trip before this
        claim = Claim(item.key, self._claim_ttl, self._margin, started, self._monotonic)
        metrics.QUEUE_DURATION.labels(self.controller).observe(max(0.0, item.claimed_at - item.enqueued_at))
        active = metrics.ACTIVE_WORKERS.labels(self.controller)
        active.inc()
        with self._lock:
            self._inflight[(item.key, item.token)] = (item, started, claim)
        raised: BaseException | None = None
        ctx: Context | None = None
        try:
            with logs.log_context(controller=self.controller, key=item.key):
                request = Request.from_key(item.key)
                if not (self._own_scope.contains(item.key) and self._scope.contains(item.key)):
                    # Outside the namespaces this process or the leader watches now (a restart with a
                    # narrower --namespace): done without a reconcile, so nothing outside is written.
                    decision = decide(returned=None)
                elif self._selectors is not None and not self._scope.lists_with(self._selectors):
                    # Before the leader's first list with our selectors is in the cache, the cache may hold
                    # objects they no longer select: wait for it, reconciling nothing (no hot loop).
                    self._log_waiting()
                    decision = Decision(Action.DEFER, "deferred", delay=SELECTOR_WAIT)
                else:
                    ctx = self.context_for(request, claim)
                    decision = decide(returned=self.reconcile(request, ctx))
        except Exception as exc:  # every reconcile failure goes through the outcome switch
            raised = exc
            decision = decide(raised=exc)
        finally:
            elapsed = self._monotonic() - started
            active.dec()
            metrics.RECONCILE_TIME.labels(self.controller).observe(elapsed)
            metrics.QUEUE_WORK_DURATION.labels(self.controller).observe(elapsed)
        return decision, claim, ctx, raised

    def _log_waiting(self) -> None:
        """Say, at most every SELECTOR_WAIT_LOG_INTERVAL seconds, that keys wait for the leader's list."""
        now = self._monotonic()
        with self._lock:
            if now - self._waiting_logged_at < SELECTOR_WAIT_LOG_INTERVAL:
                return
            self._waiting_logged_at = now
        listed = self._scope.listed
        log.info("shard %s waits for the leader's first list with %s to be in the cache (published: %s); "
                 "keys are added back every %.0f s until then", self.shard, self._selectors,
                 "not listed yet" if listed is None else listed, SELECTOR_WAIT)

    def context_for(self, request: Request, claim: Claim | None = None) -> Context:
        """The context of one reconcile of ``request`` under ``claim`` (None: a claim that never expires).

        About 2 µs with its claim: a slotted object, the fenced client and the recorder bound to it."""
        client = FencedClient(self._client, claim if claim is not None else Claim.unbounded(request.key))
        recorder = self._recorder.bound(client) if self._recorder is not None else self._no_recorder
        return Context(request=request, controller=self.controller, shard=self.shard, logger=self._logger,
                       cache=self._cache, client=client, recorder=recorder,
                       resource=self._resource, queue=self.queue, jobs=self._jobs)

    def _finish(self, item: Item, decision: Decision, claim: Claim, ctx: Context | None,
                raised: BaseException | None) -> Item | None:
        """Apply ``decision`` and release the claim; returns the next item when it came in the same trip."""
        forget = self._settle(item, decision, claim, ctx, raised)
        if forget is None:
            return None
        try:
            if self._stop.is_set():
                self.queue.done(item, forget=forget)
                return None
            return self.queue.done_and_get(item, timeout=0, forget=forget)
        except ClaimLostError:
            log.warning("claim on %s expired before done; queuing it again for its new owner", item.key)
            self.queue.add(item.key)
            return None

    def _settle(self, item: Item, decision: Decision, claim: Claim, ctx: Context | None,
                raised: BaseException | None) -> bool | None:
        """Everything before the release: metrics, error report, the claim check and the outcome. Returns
        whether the release forgets the key's failures, or None when the claim was lost (key added again)."""
        with self._lock:
            self._inflight.pop((item.key, item.token), None)
        if decision.action is Action.DEFER:  # not a reconcile: no metric, the key's last error kept
            if not claim.held():
                self._requeue_lost(item, raised)
                return None
            self._apply(item.key, decision)
            return False
        metrics.RECONCILE_TOTAL.labels(self.controller, decision.result).inc()
        if decision.error:
            metrics.RECONCILE_ERRORS.labels(self.controller).inc()
        if decision.terminal:
            metrics.TERMINAL_RECONCILE_ERRORS.labels(self.controller).inc()
        if decision.error and claim.held():
            self.errors.report(item.key, decision, raised, ctx)
        if not claim.held():  # checked again before the outcome is applied: a lost claim changes nothing
            self._requeue_lost(item, raised)
            return None
        if not decision.error:
            self.errors.clear(item.key)
        self._apply(item.key, decision)
        # Success forgets the key's failures inside the done script: one round trip per reconcile.
        return decision.action is Action.FORGET

    def _requeue_lost(self, item: Item, raised: BaseException | None) -> None:
        """The claim on ``item`` was lost mid-reconcile: nothing more was written; add the key (never drop it).

        ``add`` marks the key dirty, so whoever holds the claim now hands it out again after its ``done``.
        ``done`` then releases this worker's claim if Redis still has it (the loss was only local, e.g. a
        slow renew), which hands the key out at once; it changes nothing when the claim is another's.
        """
        why = f": {raised}" if isinstance(raised, ClaimLost) else ""
        log.warning("claim on %s was lost during its reconcile%s; queuing it again", item.key, why)
        self.queue.add(item.key)
        with contextlib.suppress(ClaimLostError):
            self.queue.done(item)

    def _apply(self, key: str, decision: Decision) -> None:
        queue = self.queue
        if decision.action is Action.FORGET:
            return  # done(forget=True) resets the failures in the same round trip
        if decision.action is Action.DEFER:
            queue.add_after(key, decision.delay)
        elif decision.action is Action.REQUEUE_AFTER:
            queue.forget(key)
            queue.add_after(key, decision.delay)
        elif decision.action is Action.RETRY_AFTER:
            # At least the key's own backoff (which also counts the failure): TemporaryError(delay=0)
            # in a loop must back off like any other failure, not take every hand-out (I4).
            metrics.QUEUE_RETRIES.labels(self.controller).inc()
            queue.add_rate_limited(key, at_least=decision.delay)
        else:
            metrics.QUEUE_RETRIES.labels(self.controller).inc()
            queue.add_rate_limited(key)

    # -- claims --------------------------------------------------------------------

    def _renew_loop(self) -> None:
        interval = max(self.queue.claim_ttl / 3.0, 0.01)
        while not self._renewer_stop.wait(interval):
            with self._lock:
                inflight = list(self._inflight.values())
            now = self._monotonic()
            oldest = min((started for _, started, _ in inflight), default=None)
            metrics.QUEUE_LONGEST_RUNNING.labels(self.controller).set(0.0 if oldest is None else now - oldest)
            metrics.QUEUE_UNFINISHED_WORK.labels(self.controller).set(sum(now - started for _, started, _ in inflight))
            for item, _, claim in inflight:
                sent = self._monotonic()  # the new deadline counts from before the renew was sent
                try:
                    self.queue.renew(item)
                    claim.confirm(sent)
                except ClaimLostError:
                    claim.lose()
                except StorageError as exc:
                    log.warning("could not renew the claim on %s: %s", item.key, exc)

