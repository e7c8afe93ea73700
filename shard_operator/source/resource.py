"""What the informer watches, and the raw HTTP list/watch calls it makes for it.

A :class:`Resource` names any API resource (core or grouped, namespaced or cluster-scoped) so one
informer serves every kind. :class:`ApiListWatch` is the only place in :mod:`shard_operator.source`
that touches the ``kubernetes`` client: it calls ``ApiClient.call_api`` with raw responses and
decodes them itself with ``json`` (much faster than the client's model deserialization; decoding is about
1% of the leader's ingest cost, so a faster decoder would not pay for a dependency) and maps failures through
:mod:`shard_operator.kube`. The reflector talks to it through the :class:`ListWatch` protocol, so
tests can put a fake in its place.

With a ``shard_range`` (:class:`~shard_operator.source.hashrange.HashRange`), every LIST and WATCH
carries the ``shardSelector`` of that range (server-side sharded list and watch, Kubernetes >= 1.36
with the ``ShardedListAndWatch`` gate), and the first page of every list is checked for the server's
echo in ``metadata.shardInfo`` (Kubernetes 1.37 echoes it for built-in resources, not for custom
resources, which it filters all the same). Without an echo every object is checked against the range
on the client; one outside it shows the server ignored the selector and answered the whole
collection: ``unsharded="error"`` (the default) raises
:class:`~shard_operator.errors.ShardingUnsupportedError`, ``unsharded="filter"`` keeps only the range's
objects (the same result, without the savings on the server and the wire).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shard_operator.codec import loads as _loads
from shard_operator.errors import ShardingUnsupportedError
from shard_operator.kube import raw_request
from shard_operator.source.hashrange import HashRange

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ApiListWatch", "ListPage", "ListWatch", "Resource", "object_key"]

log = logging.getLogger(__name__)

_Query = list[tuple[str, str]]
_Batch = list[dict[str, Any]]


@dataclass(frozen=True)
class Resource:
    """An API resource: ``group`` ("" for the core group), ``version``, ``plural``, and its scope."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def name(self) -> str:
        """A stable name for caches and logs, like kubectl's: ``widgets.v1.example.com``, ``pods.v1``."""
        return ".".join(part for part in (self.plural, self.version, self.group) if part)

    def path(self, namespace: str | None = None) -> str:
        """The collection's URL path, in ``namespace`` or across all namespaces when None."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


def object_key(obj: dict[str, Any]) -> str:
    """The cache key of an object: ``namespace/name``, or ``name`` when cluster-scoped."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


@dataclass(frozen=True)
class ListPage:
    """One page of a LIST: the items, the list's resourceVersion, and the token of the next page."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None


class ListWatch(Protocol):
    """The two calls a reflector makes; each raises :class:`~shard_operator.errors.ApiError`
    subclasses for API errors and ``OSError``-like exceptions for transport failures."""

    def list(self, namespace: str | None, *, limit: int, continue_token: str | None) -> ListPage:
        """One page of the collection."""
        ...

    def watch(self, namespace: str | None, *, resource_version: str,
              timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) from ``resource_version``, until the server ends it."""
        ...

    def interrupt(self) -> None:
        """Make watches open or being opened in other threads end at once (the informer is stopping)."""
        ...


class ApiListWatch:
    """:class:`ListWatch` over a ``kubernetes.client.ApiClient`` with server-side selectors.

    ``shard_range`` restricts it to the objects whose uid hash lies in that range (see the module's
    docstring for ``unsharded``). :attr:`server_sharded` says what the lists showed: True when the
    server echoed the selector, False when it answered objects outside the range (filtered here), None
    before the first list, without a range, or while nothing proved either (no echo, every object in range).
    """

    def __init__(self, api_client: ApiClient, resource: Resource, *, label_selector: str | None = None,
                 field_selector: str | None = None, connect_timeout: float = 10.0,
                 list_timeout: float = 60.0, shard_range: HashRange | None = None,
                 unsharded: Literal["error", "filter"] = "error") -> None:
        if unsharded not in ("error", "filter"):
            raise ValueError(f"unsharded must be 'error' or 'filter', not {unsharded!r}")
        self._api = api_client
        self._resource = resource
        self._shard_range = shard_range
        self._unsharded = unsharded
        self.server_sharded: bool | None = None
        self._selectors = [(name, value) for name, value in (
            ("labelSelector", label_selector), ("fieldSelector", field_selector),
            ("shardSelector", shard_range.selector if shard_range else None)) if value]
        self._connect_timeout = connect_timeout
        self._list_timeout = list_timeout
        self._lock = threading.Lock()
        self._responses: set[Any] = set()
        self._interrupted = False

    def list(self, namespace: str | None, *, limit: int, continue_token: str | None) -> ListPage:
        query = [*self._selectors, ("limit", str(limit))]
        if continue_token:
            query.append(("continue", continue_token))
        response = self._get(namespace, query, self._list_timeout)
        try:
            body = _loads(response.data)
        finally:
            response.release_conn()
        meta = body.get("metadata") or {}
        items: list[dict[str, Any]] = body.get("items") or []
        if self._shard_range is not None:
            if continue_token is None:
                self._check_shard_info(meta)
            if not self.server_sharded:
                items = self._keep_in_range(items)
        kind = str(body.get("kind", ""))
        if kind.endswith("List"):  # items of built-in lists come without apiVersion and kind
            for item in items:
                item.setdefault("apiVersion", body.get("apiVersion"))
                item.setdefault("kind", kind[: -len("List")])
        return ListPage(items, str(meta.get("resourceVersion", "")), meta.get("continue") or None)

    @property
    def shard_range(self) -> HashRange | None:
        """The range this list-watch is restricted to (None: every object)."""
        return self._shard_range

    def _check_shard_info(self, meta: dict[str, Any]) -> None:
        """Compare the first page's ``shardInfo`` with the selector sent; True sets :attr:`server_sharded`.

        Without an echo, the answer is not trusted (None) but not refused either: Kubernetes 1.37 filters
        custom resources by the selector without echoing it. Their items are then checked one by one
        (:meth:`_keep_in_range`): an object outside the range proves the server ignored the selector.
        """
        assert self._shard_range is not None
        sent = self._shard_range.selector
        echoed = (meta.get("shardInfo") or {}).get("selector")
        if echoed is not None and echoed != sent:  # never take a list of some other selector as ours
            raise ShardingUnsupportedError(
                f"{self._resource.name}: the API server echoed shardSelector {echoed!r}, not the {sent!r} "
                "that was sent", selector=sent)
        if echoed == sent:
            self.server_sharded = True
        elif self.server_sharded:
            self.server_sharded = None  # it echoed before: a restarted server may run without the gate now

    def _keep_in_range(self, items: _Batch) -> _Batch:
        """The items in the range; an item outside it means the server ignored the selector: raise
        (``unsharded="error"``) or drop it, saying so once (``"filter"``)."""
        assert self._shard_range is not None
        kept = [item for item in items if self._shard_range.contains(item)]
        if len(kept) < len(items):
            self._ignored()
        return kept

    def _ignored(self) -> None:
        assert self._shard_range is not None
        if self._unsharded == "error":
            raise ShardingUnsupportedError(
                f"{self._resource.name}: the API server ignored shardSelector (it answered objects outside "
                f"the range {self._shard_range}): server-side sharded list and watch needs Kubernetes >= 1.36 "
                "with the feature gate ShardedListAndWatch=true", selector=self._shard_range.selector)
        if self.server_sharded is not False:
            log.warning("%s: the API server ignored shardSelector (Kubernetes < 1.36 or the ShardedListAndWatch "
                        "gate off); filtering the range %s here", self._resource.name, self._shard_range)
        self.server_sharded = False

    def watch(self, namespace: str | None, *, resource_version: str,
              timeout_seconds: int) -> Iterator[dict[str, Any]]:
        for batch in self.watch_batches(namespace, resource_version=resource_version,
                                        timeout_seconds=timeout_seconds):
            yield from batch

    def watch_batches(self, namespace: str | None, *, resource_version: str,
                      timeout_seconds: int) -> Iterator[_Batch]:
        """Like :meth:`watch`, but each item is every event that arrived in one read from the
        socket (one or more): a reflector with a batch handler handles them in one go."""
        query = [*self._selectors, ("watch", "true"), ("allowWatchBookmarks", "true"),
                 ("resourceVersion", resource_version), ("timeoutSeconds", str(timeout_seconds))]
        # Unless the last list's echo showed the server applies the shard selector, check the events here.
        keep = self._in_range if self._shard_range is not None and not self.server_sharded else None
        # The read timeout outlasts the server's own timeout, so a healthy watch ends cleanly.
        response = self._get(namespace, query, timeout_seconds + 15.0)
        with self._lock:
            self._responses.add(response)
            interrupted = self._interrupted
        if interrupted:  # interrupt() ran while the request was in flight
            self._shutdown(response)
        try:
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                batch = [_loads(line) for line in lines if line.strip()]
                if batch and keep is not None:
                    batch = [event for event in batch if keep(event)]
                if batch:
                    yield batch
            if buffer.strip():
                tail = [_loads(buffer)]
                if keep is not None:
                    tail = [event for event in tail if keep(event)]
                if tail:
                    yield tail
        finally:
            with self._lock:
                self._responses.discard(response)
            response.release_conn()

    def _in_range(self, event: dict[str, Any]) -> bool:
        """Whether a watch event concerns the shard range (bookmarks and errors always do); one that does
        not means the server ignored the selector (see :meth:`_ignored`)."""
        assert self._shard_range is not None
        if event.get("type") in ("BOOKMARK", "ERROR") or self._shard_range.contains(event.get("object") or {}):
            return True
        self._ignored()
        return False

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            responses = list(self._responses)
        for response in responses:
            self._shutdown(response)

    @staticmethod
    def _shutdown(response: Any) -> None:
        shutdown = getattr(response, "shutdown", None)  # urllib3 >= 2.3 unblocks a pending read
        with contextlib.suppress(OSError):
            (shutdown or response.close)()

    def _get(self, namespace: str | None, query: _Query, read_timeout: float) -> Any:
        return raw_request(self._api, "GET", self._resource.path(namespace), query=list(query),
                           timeout=(self._connect_timeout, read_timeout))
