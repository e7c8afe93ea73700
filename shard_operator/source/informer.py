"""The informer: list+watch one resource and hand every change to the leader's handler.

This is the first stage of the pipeline (docs/design.md §2.1): the leader runs one :class:`Informer` per
watched resource, each in its own threads; its handler writes the shared cache
(:mod:`shard_operator.cache`) and maps events to work queue keys. Selectors are applied by the API
server; the transform (by default dropping ``metadata.managedFields``) runs before anything is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from shard_operator.errors import ConfigError
from shard_operator.source.backoff import Backoff
from shard_operator.source.event import Event, EventType, Handler, Transform, drop_managed_fields
from shard_operator.source.hashrange import HashRange
from shard_operator.source.reflector import BatchHandler, ListHook, Reflector, StreamingListHook
from shard_operator.source.resource import ApiListWatch, ListWatch, Resource

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["Informer"]


class Informer:
    """Watches ``resource`` in ``namespaces`` (None: all; a name; or several names, one watch each).

    Contract:

    - ``handler(event)`` receives every ADDED/MODIFIED/DELETED change, in the order the API server
      made them per scope, from the informer's threads, never two at once. After a relist (start,
      410 Gone, handler failure) it receives the differences from what it saw before, so a deletion
      missed while disconnected arrives as DELETED.
    - ``on_list(namespace, objects, resource_version)`` receives the full state after every list,
      before its events: a cache replaces that scope with it. ``on_list_streamed`` instead receives
      the objects page by page as they are read (a one-pass iterator), so the leader never holds a
      whole list; the events of such a relist carry fingerprints as ``new`` and ``listed=True``.
    - ``has_synced`` turns true once every scope has been listed, and stays true.
    - ``handler_many(events)``, when given, receives instead the watch events that arrived together
      (one read of the stream), in order, so the leader can write and queue them in one round trip
      each, and the differences of a streamed relist in batches of 500; the differences of an
      ``on_list`` relist and resyncs still go to ``handler``.
    - ``old`` objects are fingerprints (:func:`~shard_operator.source.event.fingerprint`): the
      informer keeps per key only identity, version and the metadata predicates and ``Owns`` read,
      so the leader's memory grows with the number of keys; the shared cache holds the full objects.
    - ``resync_period`` (off by default) re-delivers every known object as MODIFIED with old == new
      (the same fingerprint, so handlers see a resync and the cache is not rewritten).
    - ``stop()`` returns within about a second: it interrupts the open watches.
    - Failures back off (``backoff``; at least ``Retry-After`` on a 429); ``retry_now()`` ends the
      waits after failures that were not 429s, for a caller that knows their cause has gone.

    - ``shard_range`` restricts it to the objects whose uid hash lies in that range, selected by the
      API server (sharded list and watch, Kubernetes >= 1.36 with its feature gate); a server that
      ignores the selector makes each list fail with :class:`~shard_operator.errors.ShardingUnsupportedError`
      (logged, retried with backoff), or with ``unsharded="filter"`` the range is filtered here.

    ``api_client`` is used for raw list/watch calls; ``list_watch`` replaces them (tests, fakes).
    """

    def __init__(self, resource: Resource, handler: Handler, *, api_client: ApiClient | None = None,
                 list_watch: ListWatch | None = None, namespaces: str | Sequence[str] | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 transform: Transform | None = drop_managed_fields, on_list: ListHook | None = None,
                 resync_period: float | None = None, page_size: int = 500, watch_timeout: int = 45,
                 backoff: Backoff | None = None, name: str | None = None,
                 on_list_streamed: StreamingListHook | None = None,
                 handler_many: BatchHandler | None = None, shard_range: HashRange | None = None,
                 unsharded: Literal["error", "filter"] = "error") -> None:
        if list_watch is None:
            if api_client is None:
                raise ConfigError("an Informer needs an api_client or a list_watch")
            list_watch = ApiListWatch(api_client, resource, label_selector=label_selector,
                                      field_selector=field_selector, shard_range=shard_range,
                                      unsharded=unsharded)
        elif shard_range is not None:
            raise ConfigError("give an Informer shard_range with an api_client; a list_watch applies its own")
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        if namespaces is not None and not resource.namespaced:
            raise ConfigError(f"{resource.name} is cluster-scoped: it cannot be watched per namespace")
        if namespaces is not None and not namespaces:
            raise ConfigError("namespaces must be None (all) or name at least one namespace")
        if on_list is not None and on_list_streamed is not None:
            raise ConfigError("give an Informer on_list or on_list_streamed, not both")
        if resync_period is not None and resync_period <= 0:
            raise ConfigError("resync_period must be positive, or None for no resync")
        self.resource = resource
        self.name = name or resource.name
        self._list_watch = list_watch
        self._handler = handler
        self._resync_period = resync_period
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        scopes: list[str | None] = list(dict.fromkeys(namespaces)) if namespaces is not None else [None]
        template = backoff or Backoff()
        self._reflectors = [
            Reflector(list_watch, scope, handler=handler, on_list=on_list, on_list_streamed=on_list_streamed,
                      handler_many=handler_many, transform=transform,
                      lock=self._lock, stop_event=self._stop, page_size=page_size,
                      watch_timeout=watch_timeout,
                      backoff=Backoff(template.initial, template.maximum, template.factor, template.jitter))
            for scope in scopes
        ]

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Informer:
        if self._threads:
            raise RuntimeError(f"informer {self.name} was already started")
        for reflector in self._reflectors:
            scope = reflector.namespace or "*"
            self._threads.append(threading.Thread(target=reflector.run, name=f"informer-{self.name}-{scope}",
                                                  daemon=True))
        if self._resync_period is not None:
            self._threads.append(threading.Thread(target=self._resync_loop, name=f"resync-{self.name}",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and wait up to ``timeout`` seconds for the threads to end. Idempotent."""
        self._stop.set()
        for reflector in self._reflectors:
            reflector.wake()  # ends a backoff wait
        self._list_watch.interrupt()
        for thread in self._threads:
            thread.join(timeout)

    def retry_now(self) -> None:
        """End every backoff wait now and reset the backoffs: the cause of the failures is gone
        (Redis is back). A ``Retry-After`` wait of a 429 is kept."""
        for reflector in self._reflectors:
            reflector.wake()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> Informer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return all(reflector.synced.is_set() for reflector in self._reflectors)

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until every scope has been listed once; False on timeout or stop."""
        synced = all(reflector.synced.wait(timeout) for reflector in self._reflectors)
        return synced and not self._stop.is_set()

    @property
    def relists(self) -> int:
        """How many lists have completed, over all scopes (the first included)."""
        return sum(reflector.relists for reflector in self._reflectors)

    def get(self, key: str) -> dict[str, Any] | None:
        """The fingerprint of ``key``'s (``namespace/name``) last known state, or None."""
        with self._lock:
            for reflector in self._reflectors:
                if key in reflector.store:
                    return reflector.store[key]
        return None

    def list(self) -> list[dict[str, Any]]:
        """A snapshot of the fingerprints of every object the informer knows."""
        with self._lock:
            return [obj for reflector in self._reflectors for obj in reflector.store.values()]

    # -- resync ----------------------------------------------------------------------

    def _resync_loop(self) -> None:
        assert self._resync_period is not None
        while not self._stop.wait(self._resync_period):
            with self._lock:
                for reflector in self._reflectors:
                    for key, obj in list(reflector.store.items()):
                        if self._stop.is_set():
                            return
                        try:
                            self._handler(Event(EventType.MODIFIED, key, obj, obj))
                        except Exception:  # the next watch event or resync delivers it again
                            continue
