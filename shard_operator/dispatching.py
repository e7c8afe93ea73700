"""The leader's event path: every informer event goes into the shared cache, through the handlers,
and onto the work queue, in that order.

Where it sits: between the informers (:mod:`shard_operator.source`) and the work queue
(:mod:`shard_operator.queue`), on the leader only. :class:`~shard_operator.manager.leading.LeaderRunner`
builds one :class:`EventDispatcher` per watched resource and gives it to that resource's informer as
its handler; the manager only supervises, the path itself lives here::

    informer event ──► CacheWriter.apply ──► handlers (For / Owns / Watches) ──► queue.add_many

Watch events that arrive together go through :meth:`EventDispatcher.dispatch_many` (the informer's
``handler_many``): one pipelined round trip for their upserts and one queue add for the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from shard_operator import metrics
from shard_operator.cache import CacheWriter
from shard_operator.handler import EventHandler
from shard_operator.queue import WorkQueue
from shard_operator.source import Event, EventType

__all__ = ["EventDispatcher"]


class EventDispatcher:
    """Handles the events of one watched resource (``kind``, the cache's name for it) for ``controller``.

    Contract, for each event given to :meth:`dispatch` (or to the object itself: it is an informer
    ``Handler``):

    1. The event is written to the shared cache first (an older or replayed version never overwrites
       a newer one; a resync, ``old is new``, is not written: its objects are the informer's
       fingerprints and the cache already holds the full object; nor is an event of a streamed
       relist, ``listed``: the list hook wrote the scope; see
       :class:`~shard_operator.cache.CacheWriter`). So a worker that takes a key this event queued
       reads at least this event's version of the object (I2).
    2. Every handler maps the event to keys (its predicates may drop it); the keys of all handlers are
       collected in order, without duplicates.
    3. The keys are added to the work queue in one round trip; keys already waiting are not added
       again (I3). ``workqueue_adds_total{controller}`` counts those that were.

    Errors: a :class:`~shard_operator.errors.StorageError` from the cache or the queue propagates, and
    the informer relists to deliver the event again; nothing is added to the queue for an event whose
    cache write failed. A handler's own exception propagates the same way. :meth:`dispatch` returns
    how many keys became dirty.
    """

    def __init__(self, kind: str, handlers: Sequence[EventHandler], *, cache: CacheWriter, queue: WorkQueue,
                 controller: str) -> None:
        self.kind, self.handlers = kind, tuple(handlers)
        self.cache, self.queue, self.controller = cache, queue, controller
        self._adds = metrics.QUEUE_ADDS.labels(controller)

    def __call__(self, event: Event) -> None:
        self.dispatch(event)

    def dispatch(self, event: Event) -> int:
        """Cache, map and queue ``event`` (see the class contract); returns how many keys became dirty."""
        if event.old is not event.new and not event.listed:
            self.cache.apply(self.kind, event)
        keys = dict.fromkeys(key for handler in self.handlers for key in handler.keys_for(event))
        if not keys:
            return 0
        added = self.queue.add_many(keys)
        if added:
            self._adds.inc(added)
        return added

    def dispatch_many(self, events: Sequence[Event]) -> int:
        """:meth:`dispatch` for events that arrived together: the cache writes of every event (the
        upserts in one pipelined round trip, then one per deletion), then one add of every key.

        Writing upserts before deletions is safe because the cache compares resourceVersions: a
        deletion never removes a newer re-creation, and an upsert never restores an older state. The
        contract is the class's: every write precedes every add (I2); an error propagates and the
        informer relists to deliver the whole batch again.
        """
        written = [event for event in events if event.old is not event.new and not event.listed]
        upserts = [event.new for event in written if event.type is not EventType.DELETED and event.new is not None]
        if upserts:
            self.cache.upsert_many(self.kind, upserts)
        for event in written:
            if event.type is EventType.DELETED:
                self.cache.apply(self.kind, event)
        keys = dict.fromkeys(key for event in events for handler in self.handlers
                             for key in handler.keys_for(event))
        if not keys:
            return 0
        added = self.queue.add_many(keys)
        if added:
            self._adds.inc(added)
        return added

    def __repr__(self) -> str:
        return f"EventDispatcher({self.kind!r}, {list(self.handlers)!r}, controller={self.controller!r})"
