"""What the leader runs while it holds the Lease: informers into the shared cache and the work queue,
and the coordinator that keeps the shard ring and the claims in order.

Where it sits: the manager's :class:`~shard_operator.leaderelection.LeaderElector` calls
:meth:`LeaderRunner.start` from ``on_started_leading`` and :meth:`LeaderRunner.stop` from
``on_stopped_leading``. Each informer hands its events to an
:class:`~shard_operator.dispatching.EventDispatcher` (cache write, handler mapping, queue add).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from shard_operator import metrics
from shard_operator.cache import CacheWriter
from shard_operator.cache.scope import Scope, Selectors, namespaces_cached
from shard_operator.dispatching import EventDispatcher
from shard_operator.errors import ShardOperatorError
from shard_operator.handler import EventHandler
from shard_operator.ingest import IngestRegistry, Plan
from shard_operator.keys import Keys
from shard_operator.queue import RateLimitingQueue
from shard_operator.sharding import Assigner
from shard_operator.source import Informer, Resource
from shard_operator.storage import redis_errors

if TYPE_CHECKING:
    import redis
    from kubernetes.client import ApiClient

    from shard_operator.config import Config
    from shard_operator.operator import Operator

__all__ = ["Coordinator", "LeaderRunner"]

log = logging.getLogger(__name__)


class Coordinator:
    """The leader's periodic duties, every ``interval`` seconds in one thread (the first tick one
    interval after :meth:`start`): publish the ring of live shards (moving queued keys on a change),
    re-queue keys whose claim expired, with ``sharded_ingest`` publish the next ingest plan
    (:class:`~shard_operator.ingest.IngestRegistry`), and report the shard and queue-depth metrics. Redis errors
    are logged and retried at the next tick; the first tick that succeeds after failed ones calls
    ``on_recovered`` (Redis is back: whatever backs off because of it may retry now)."""

    def __init__(self, client: redis.Redis, controller: str, *, member_ttl: float, interval: float,
                 watchdog: Callable[[], None] | None = None,
                 on_recovered: Callable[[], None] | None = None, sharded_ingest: bool = False) -> None:
        keys = Keys.for_controller(controller)
        self.ingest = IngestRegistry(client, keys, member_ttl=member_ttl) if sharded_ingest else None
        self._plan: Plan | None = None  # the ingest plan of the last tick (for its change log)
        self._watchdog = watchdog
        self._on_recovered = on_recovered
        self._failing = False
        self.controller = controller
        self.assigner = Assigner(client, keys, member_ttl=member_ttl)
        self.queue = RateLimitingQueue(client, keys, bucket=None)
        self.interval = interval
        self._client, self._keys = client, keys
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # At 0 from the start, so the dashboard's and alerts' increase() return 0, not nothing, until the
        # first ring change or expiry.
        for counter in (metrics.SHARD_ASSIGNMENTS, metrics.SHARD_MOVEMENTS, metrics.CLAIM_EXPIRIES):
            counter.labels(self.controller).inc(0)
        self._thread = threading.Thread(target=self._run, name=f"coordinator-{self.controller}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def tick(self) -> None:
        """One round of duties (the loop's body; tests call it directly)."""
        try:
            self._duties()
        except BaseException:
            self._failing = True
            raise
        if self._failing:
            self._failing = False
            log.info("coordinator of %s: Redis answers again", self.controller)
            if self._on_recovered is not None:
                self._on_recovered()

    def _duties(self) -> None:
        if self._watchdog is not None:
            self._watchdog()
        rebalance = self.assigner.rebalance()
        if rebalance.changed:
            metrics.SHARD_ASSIGNMENTS.labels(self.controller).inc()
            log.info("shard ring of %s changed: epoch %d, %d queued keys moved", self.controller,
                     rebalance.epoch, rebalance.moved)
        if rebalance.moved:
            metrics.SHARD_MOVEMENTS.labels(self.controller).inc(rebalance.moved)
        reaped = self.queue.reap_expired(limit=1000)
        if reaped:
            metrics.CLAIM_EXPIRIES.labels(self.controller).inc(reaped)
            log.info("%d expired claims of %s re-queued", reaped, self.controller)
        if self.ingest is not None:
            previous, plan = self._plan, self.ingest.plan_tick()
            self._plan = plan  # the last plan this coordinator saw: no second read of it per tick
            if previous is None or plan.epoch != previous.epoch or plan.settled != previous.settled:
                log.info("sharded ingest of %s: plan epoch %d, %s: %s", self.controller, plan.epoch,
                         "settled" if plan.settled else "handing over",
                         ", ".join(f"{member} {'+'.join(map(str, ranges))}" for member, ranges in plan.watch.items()))
        metrics.LIVE_SHARDS.labels(self.controller).set(self._client.llen(self._keys.ring))
        metrics.QUEUE_DEPTH.labels(self.controller).set(self.queue.len())

    def _run(self) -> None:
        # The first tick waits one interval: LeaderRunner.start has just done its work, and a test
        # driving tick() itself (with a long interval) never races the thread.
        while not self._stop.wait(self.interval):
            try:
                with redis_errors():
                    self.tick()
            except ShardOperatorError as exc:  # StorageError included
                log.warning("coordinator of %s: %s", self.controller, exc)


class LeaderRunner:
    """Starts and stops the leader's informers and coordinator; may be started again after a stop.

    Contract: :meth:`stop` returns within about a second and nothing it started adds keys or writes
    the cache afterwards (the informers are stopped before the method returns). ``has_synced`` is
    true while leading once every informer has listed its resource.

    Redis losing its data (a restart without persistence, a flush, a fail-over to an empty replica)
    is detected through the cache marker, written before the informers start: when the coordinator
    finds it gone, the informers are started afresh, so a new LIST refills the cache and adds every
    object's key again (I5); requeue-after timers and retry counts lost with the data come back from
    those reconciles.

    Redis down without losing its data: the informers back off while their handler fails; the
    first coordinator tick that reaches Redis again (every ``coordinate_interval``) ends their waits
    and resets their backoff, so they relist within about a tick of Redis returning.

    Scope: before the informers start, the namespaces watched for the primary resource are
    published (:class:`~shard_operator.cache.scope.Scope`, read by the workers) and the cached
    objects of every namespace outside them are removed, so a restart with a narrower
    ``--namespace`` reconciles nothing it no longer watches. The scope published then marks the
    primary resource's selectors as not listed yet; the first coordinator tick after the primary
    informer's first list is in the cache (``has_synced``) publishes them, so the workers reconcile
    nothing after a restart with a narrower ``--label-selector``/``--field-selector`` until the
    previous run's cached objects that the new selectors leave out are gone. A start of the informers
    afresh (Redis lost its data) publishes them as not listed again until the new first list is in.

    Sharded ingest (``config.sharded_ingest``): the leader runs no informer for the primary resource
    (every pod's :class:`~.ingesting.IngestRunner` lists and watches its ranges of it); the coordinator
    publishes the plan of ranges instead. The other watched resources stay with the leader. Its scope
    then tracks no selectors (the members' lists are not watched for completion): workers trust it, as
    a scope of an older leader, so the narrower-selector window after a restart remains in this mode.
    """

    def __init__(self, operator: Operator, config: Config, api_client: ApiClient, client: redis.Redis) -> None:
        self.operator, self.config = operator, config
        self._api_client, self._client = api_client, client
        self._cache = CacheWriter(client)
        self._queue = RateLimitingQueue(client, Keys.for_controller(operator.name), bucket=None)
        self._informers: list[Informer] = []
        self._primary: Informer | None = None  # the primary resource's informer, when it has one
        self._selectors_published = False  # the selectors of the running informers' first list
        self._coordinator: Coordinator | None = None
        self._marker = Keys.for_controller(operator.name).cache_marker
        self._leading = False
        self._started = False  # the informers were started (there may be none: sharded ingest)
        self._lock = threading.Lock()

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def has_synced(self) -> bool:
        informers = list(self._informers)
        return self._started and all(informer.has_synced for informer in informers)

    def start(self) -> None:
        """Start leading: the coordinator at once, the informers as soon as Redis takes the cache marker
        (retried by the coordinator's watchdog every tick until it does). Never raises."""
        with self._lock:
            if self._leading:
                return
            self._leading = True
            self._coordinator = Coordinator(self._client, self.operator.name, member_ttl=self.config.member_ttl,
                                            interval=self.config.coordinate_interval, watchdog=self._check_cache,
                                            on_recovered=self._retry_informers,
                                            sharded_ingest=self.config.sharded_ingest)
            self._coordinator.start()
            self._try_start_informers()

    def _try_start_informers(self) -> None:
        try:
            with redis_errors():
                self._start_informers()
        except ShardOperatorError as exc:  # StorageError included
            log.warning("leading %s: cannot start the informers yet (%s); retrying", self.operator.name, exc)
            return
        log.info("leading %s: watching %s", self.operator.name,
                 ", ".join(informer.name for informer in self._informers))

    def _start_informers(self) -> None:
        """Write the cache marker, then start one informer per watched resource (under ``_lock``)."""
        self._client.set(self._marker, self.config.pod_name)
        self._limit_to_scope()
        self._informers, self._primary, self._selectors_published = [], None, False
        for resource, handlers in self.operator.handlers_by_resource().items():
            if self.config.sharded_ingest and resource == self.operator.resource:
                continue  # every pod's ingest member lists and watches its ranges of it
            self._informers.append(self._informer(resource, handlers))
            if resource == self.operator.resource:
                self._primary = self._informers[-1]
        for informer in self._informers:
            informer.start()
        self._started = True

    def _limit_to_scope(self) -> None:
        """Publish the primary resource's namespaces (its selectors not listed yet) and drop cached
        objects outside them."""
        scope = self._scope(listed=False)
        scope.publish(self._client, self.operator.name)
        if scope.namespaces is None:
            return  # the first list of each resource replaces the whole kind
        for resource in self.operator.handlers_by_resource():
            if not getattr(resource, "namespaced", True):
                continue
            for namespace in namespaces_cached(self._client, resource.name) - scope.namespaces:
                removed = self._cache.replace(resource.name, [], namespace=namespace)
                log.info("%s: namespace %s is out of scope: %d cached %s removed", self.operator.name,
                         namespace, removed, resource.name)

    def _scope(self, *, listed: bool) -> Scope:
        """This leader's scope; ``listed``: with the selectors of a first list that is in the cache."""
        return Scope(Scope.of(self._namespaces()).namespaces, self._selectors() if listed else None,
                     tracks_selectors=not self.config.sharded_ingest)

    def _selectors(self) -> Selectors:
        """The primary resource's selectors: the flags, else the operator's own."""
        config, operator = self.config, self.operator
        return Selectors.of(config.label_selector or operator.label_selector,
                            config.field_selector or operator.field_selector)

    def _publish_listed_selectors(self) -> None:
        """Once the primary informer's first list is in the cache, publish the selectors it listed with
        (once per start of the informers; a Redis error leaves it to the next tick)."""
        with self._lock:
            if not self._leading or not self._informers or self._selectors_published:
                return
            listed = self._primary.has_synced if self._primary is not None else self.has_synced
            if not listed:
                return
            self._scope(listed=True).publish(self._client, self.operator.name)
            self._selectors_published = True
        log.info("%s: the first list with %s is in the cache", self.operator.name, self._selectors())

    def _namespaces(self) -> list[str] | None:
        namespaces = self.config.namespaces if self.config.namespaces is not None else self.operator.namespaces
        return None if namespaces is None else list(namespaces)

    def _retry_informers(self) -> None:
        """Redis is back after an outage: end the informers' backoff waits now."""
        for informer in list(self._informers):
            informer.retry_now()

    def _check_cache(self) -> None:
        """Start the informers if they are not running yet; relist everything if Redis lost the cache
        marker (and with it, presumably, everything else)."""
        with self._lock:
            if not self._leading:
                return  # stopped meanwhile
            if not self._started:
                self._try_start_informers()
                return
        if self._client.exists(self._marker):
            self._publish_listed_selectors()
            return
        with self._lock:
            if not self._leading or not self._started:
                return
            log.warning("the shared cache of %s is gone (Redis lost its data): relisting every resource",
                        self.operator.name)
            metrics.CACHE_RELISTS.labels(self.operator.name).inc()
            old, self._informers = self._informers, []
            self._started = False
            for informer in old:
                informer.stop(timeout=2.0)
            self._try_start_informers()

    def stop(self) -> None:
        with self._lock:
            self._leading = False
            self._started = False
            informers, self._informers, self._primary = self._informers, [], None
            coordinator, self._coordinator = self._coordinator, None
        for informer in informers:
            informer.stop(timeout=2.0)
        if coordinator is not None:
            coordinator.stop()

    def _informer(self, resource: Resource, handlers: list[EventHandler]) -> Informer:
        primary = resource == self.operator.resource
        operator = self.operator
        namespaces = self._namespaces()
        if not resource.namespaced:
            namespaces = None
        selectors = self._selectors() if primary else Selectors()
        dispatcher = EventDispatcher(resource.name, handlers, cache=self._cache, queue=self._queue,
                                     controller=operator.name)
        return Informer(resource, dispatcher, api_client=self._api_client,
                        namespaces=namespaces, label_selector=selectors.label, field_selector=selectors.field,
                        transform=operator.transform, on_list_streamed=self._cache.list_hook_for(resource.name),
                        handler_many=dispatcher.dispatch_many)
