"""The list-then-watch loop for one scope (one namespace, or all) of one resource.

:class:`Reflector` is client-go's reflector: a paged LIST, then a WATCH from the list's
resourceVersion that resumes from the last version seen when the connection drops or the server ends
it, a fresh LIST when the version is gone (HTTP 410 or an ``ERROR`` event with code 410), and
jittered backoff on every other failure (at least ``Retry-After`` on 429). It keeps a
:func:`~shard_operator.source.event.fingerprint` of each of the scope's objects (identity, version
and the metadata predicates read, not the whole object: the leader's memory grows with the number of
keys, not with the objects' size) so that it can hand the informer ``old`` objects and, after a
relist, the differences as events. :class:`~shard_operator.source.informer.Informer` runs one per scope.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from shard_operator.errors import GoneError, TooManyRequestsError
from shard_operator.kube import status_error
from shard_operator.source.backoff import Backoff
from shard_operator.source.event import Event, EventType, Handler, Transform, fingerprint
from shard_operator.source.resource import ListWatch, object_key

__all__ = ["BatchHandler", "ListHook", "Reflector", "StreamingListHook"]

log = logging.getLogger(__name__)

_LISTED_BATCH = 500

ListHook = Callable[[str | None, list[dict[str, Any]], str], None]
"""Called after every (re)list with the scope's namespace (None: all), the objects and the list's version."""

BatchHandler = Callable[[list[Event]], object]
"""Handles the watch events that arrived together, in order, as one call (the leader pipelines their
cache writes and queue adds); if it raises, none of them counts as handled."""

StreamingListHook = Callable[[str | None, Iterator[dict[str, Any]], str], None]
"""Like :data:`ListHook`, but the objects arrive page by page while the list is read, to be consumed
once: the reflector never holds the whole list. The hook must consume the iterator to its end (an
API failure or a stop while listing raises out of it, so a partial list is never taken as whole)."""


class Reflector:
    """Keeps ``store`` (key to fingerprint) equal to the API server's objects in ``namespace`` and
    reports each change.

    ``handler`` and ``on_list`` run in the reflector's thread while ``lock`` is held, so the
    informer's handlers never run concurrently. If either raises, the reflector backs off and relists:
    ``on_list`` then receives the full state again, which is how the shared cache converges after an
    outage of Redis. ``run`` returns when ``stop_event`` is set.

    :meth:`wake` ends a backoff wait at once and starts the backoff again from its first step (the
    leader calls it when Redis is back after an outage, so the relist that refills the cache does
    not wait out a delay grown during the outage). It never shortens a wait the API server asked
    for with ``Retry-After``.
    """

    def __init__(self, list_watch: ListWatch, namespace: str | None, *, handler: Handler,
                 on_list: ListHook | None, transform: Transform | None, lock: threading.RLock,
                 stop_event: threading.Event, page_size: int = 500, watch_timeout: int = 45,
                 backoff: Backoff | None = None, on_list_streamed: StreamingListHook | None = None,
                 handler_many: BatchHandler | None = None) -> None:
        if on_list is not None and on_list_streamed is not None:
            raise ValueError("give on_list or on_list_streamed, not both")
        self.namespace = namespace
        self.store: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.synced = threading.Event()
        self.relists = 0
        self._lw = list_watch
        self._handler = handler
        self._handler_many = handler_many
        self._on_list = on_list
        self._on_list_streamed = on_list_streamed
        self._transform = transform
        self._lock = lock
        self._stop = stop_event
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._backoff = backoff or Backoff()
        self._wake = threading.Event()

    def wake(self) -> None:
        """Retry now if waiting after a failure (not a 429), with the backoff reset."""
        self._backoff.reset()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a wake that arrives from here on ends the next wait
            try:
                if self.resource_version is None:
                    self._list()
                if not self._stop.is_set():
                    self._watch()
                continue
            except GoneError as exc:
                log.info("%s: resourceVersion %s is gone (%s); relisting", self._scope, self.resource_version,
                         exc)
                self.resource_version = None
                if self._backoff.failures == 0:
                    self._backoff.next()  # relist at once the first time; back off if 410s repeat
                    continue
                delay = self._backoff.next()
            except TooManyRequestsError as exc:
                delay = max(exc.retry_after or 0.0, self._backoff.next())
                log.info("%s: throttled by the API server; retrying in %.2fs", self._scope, delay)
                self._stop.wait(delay)  # Retry-After is the server's: a wake does not shorten it
                continue
            except _HandlerFailed as exc:
                delay = self._backoff.next()
                self.resource_version = None
                log.error("%s: the handler failed; relisting in %.2fs", self._scope, delay,
                          exc_info=exc.__cause__)
            except Exception as exc:
                if self._stop.is_set():
                    break
                delay = self._backoff.next()
                log.warning("%s: list/watch failed (%s: %s); retrying in %.2fs", self._scope,
                            type(exc).__name__, exc, delay)
            if not self._stop.is_set():
                self._wake.wait(delay)  # stop() sets it too

    @property
    def _scope(self) -> str:
        return f"namespace {self.namespace}" if self.namespace else "all namespaces"

    def _list(self) -> None:
        if self._on_list_streamed is not None:
            self._list_streamed(self._on_list_streamed)
            return
        items: list[dict[str, Any]] = []
        token: str | None = None
        restarted = False
        while True:
            try:
                page = self._lw.list(self.namespace, limit=self._page_size, continue_token=token)
            except GoneError:
                if token is None or restarted:
                    raise
                restarted, items, token = True, [], None  # the continue token expired: start over
                continue
            items.extend(page.items)
            token = page.continue_token
            if not token:
                break
            if self._stop.is_set():
                return
        listed: list[dict[str, Any]] = []
        fresh: dict[str, dict[str, Any]] = {}
        for item in items:
            obj = self._transform(item) if self._transform else item
            listed.append(obj)
            fresh[object_key(obj)] = fingerprint(obj)
        del items
        with self._lock:
            events = [Event(EventType.DELETED, key, old, None)
                      for key, old in self.store.items() if key not in fresh]
            for obj in listed:
                key = object_key(obj)
                old = self.store.get(key)
                if old is None:
                    events.append(Event(EventType.ADDED, key, None, obj))
                elif _version(old) != _version(obj):
                    events.append(Event(EventType.MODIFIED, key, old, obj))
            previous, self.store = self.store, fresh
            self.resource_version = page.resource_version
            self.relists += 1
            try:
                if self._on_list is not None:
                    self._on_list(self.namespace, listed, page.resource_version)
                for event in events:
                    self._handler(event)
            except Exception as exc:
                # Forget this list: the next one is compared with the store as it was, so every event
                # that was not handled is delivered again (I2) instead of matching the store already.
                self.store = previous
                raise _HandlerFailed from exc
        self.synced.set()
        self._backoff.reset()
        log.debug("%s: listed %d objects at %s", self._scope, len(fresh), page.resource_version)

    def _list_streamed(self, on_list: StreamingListHook) -> None:
        """List page by page into ``on_list``, keeping only fingerprints; the ADDED and MODIFIED
        events that follow carry the listed object's fingerprint as ``new`` and ``listed=True``
        (the hook has written the whole objects)."""
        first = self._lw.list(self.namespace, limit=self._page_size, continue_token=None)
        fresh: dict[str, dict[str, Any]] = {}
        failure: list[BaseException] = []

        def objects() -> Iterator[dict[str, Any]]:
            page = first
            try:
                while True:
                    for item in page.items:
                        obj = self._transform(item) if self._transform else item
                        fresh[object_key(obj)] = fingerprint(obj)
                        yield obj
                    if not page.continue_token:
                        return
                    if self._stop.is_set():
                        raise _ListAborted
                    page = self._lw.list(self.namespace, limit=self._page_size,
                                         continue_token=page.continue_token)
            except BaseException as exc:  # an API failure: re-raised as itself, not as the hook's
                failure.append(exc)
                raise

        with self._lock:
            previous = self.store
            try:
                on_list(self.namespace, objects(), first.resource_version)
            except Exception as exc:
                if failure:
                    if isinstance(failure[0], _ListAborted):
                        return
                    raise failure[0] from None
                raise _HandlerFailed from exc
            events = self._differences(previous, fresh)
            self.store = fresh
            self.resource_version = first.resource_version
            self.relists += 1
            try:
                if self._handler_many is not None:  # a streamed relist's events go in batches too
                    batch = list(itertools.islice(events, _LISTED_BATCH))
                    while batch:
                        self._handler_many(batch)
                        batch = list(itertools.islice(events, _LISTED_BATCH))
                else:
                    for event in events:
                        self._handler(event)
            except Exception as exc:
                self.store = previous  # as in _list: the next list delivers every event again (I2)
                raise _HandlerFailed from exc
        self.synced.set()
        self._backoff.reset()
        log.debug("%s: listed %d objects at %s", self._scope, len(fresh), first.resource_version)

    @staticmethod
    def _differences(previous: dict[str, dict[str, Any]], fresh: dict[str, dict[str, Any]]) -> Iterator[Event]:
        """The events of a streamed relist, made one at a time (not a list of them all)."""
        for key, gone in previous.items():
            if key not in fresh:
                yield Event(EventType.DELETED, key, gone, None, listed=True)
        for key, new in fresh.items():
            old = previous.get(key)
            if old is None:
                yield Event(EventType.ADDED, key, None, new, listed=True)
            elif _version(old) != _version(new):
                yield Event(EventType.MODIFIED, key, old, new, listed=True)

    def _watch(self) -> None:
        assert self.resource_version is not None
        stream: Iterator[Any]
        batches: Iterable[list[dict[str, Any]]]
        if self._handler_many is not None and hasattr(self._lw, "watch_batches"):
            stream = batches = self._lw.watch_batches(self.namespace, resource_version=self.resource_version,
                                                      timeout_seconds=self._watch_timeout)
        else:
            stream = self._lw.watch(self.namespace, resource_version=self.resource_version,
                                    timeout_seconds=self._watch_timeout)
            batches = ([raw] for raw in stream)
        try:
            self._consume(batches)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _consume(self, batches: Iterable[list[dict[str, Any]]]) -> None:
        for batch in batches:
            if self._stop.is_set():
                return
            error: Exception | None = None
            with self._lock:
                events: list[Event] = []
                undo: list[tuple[str, dict[str, Any] | None]] = []
                for raw in batch:
                    kind, obj = raw.get("type"), raw.get("object") or {}
                    if kind == "ERROR":
                        error = status_error(obj)  # raised once the events before it are handled
                        break
                    version = _version(obj)
                    if kind != "BOOKMARK":
                        if self._transform is not None:
                            obj = self._transform(obj)
                        key = object_key(obj)
                        old = self.store.get(key)
                        undo.append((key, old))
                        if kind == "DELETED":
                            self.store.pop(key, None)
                            events.append(Event(EventType.DELETED, key, obj, None))
                        else:
                            self.store[key] = fingerprint(obj)
                            events.append(Event(EventType.ADDED if old is None else EventType.MODIFIED,
                                                key, old, obj))
                    self.resource_version = version or self.resource_version
                try:
                    if self._handler_many is not None and events:
                        self._handler_many(events)
                    else:
                        for event in events:
                            self._handler(event)
                except Exception as exc:
                    # Undo the store's changes, so the relist that follows sees them again and delivers
                    # them (else it would find the store already matching and the adds are lost).
                    for key, old in reversed(undo):
                        if old is None:
                            self.store.pop(key, None)
                        else:
                            self.store[key] = old
                    raise _HandlerFailed from exc
            if error is not None:
                raise error
            self._backoff.reset()


class _ListAborted(Exception):
    """The informer stopped while a streamed list was being read."""


class _HandlerFailed(Exception):
    """The handler or list hook raised (the cause); the reflector relists to recover."""


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))
