"""An ingest member: one pod's informers for the hash ranges the plan gives it.

Every manager of a sharded ingest runs one :class:`IngestMember` for the primary resource. The
leader publishes the :class:`~.plan.Plan`; the member makes its informers match its entry with
:meth:`IngestMember.apply` (called again on every tick, it is idempotent) and reports
:attr:`IngestMember.synced_epoch` back, which lets the leader complete hand-overs.

Contract:

- each range of the member's entry has one informer listing and watching it with server-side
  shard selectors (:class:`~shard_operator.source.Informer` with ``shard_range``); its relists replace
  only that range's part of the shared cache (:meth:`CacheWriter.list_hook_for` with the range);
- a range that left the entry keeps its informer until every informer of the entry has listed its
  range, so a hash this member watches is never left unwatched by it while a new informer lists;
- :attr:`synced_epoch` is the epoch of the latest applied plan whose ranges this member has all
  listed (None before): only then may the leader take ranges away from the previous owners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shard_operator.cache import CacheWriter
from shard_operator.ingest.plan import Plan
from shard_operator.source import BatchHandler, Handler, HashRange, Informer, Resource, Transform, drop_managed_fields

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["IngestMember"]

log = logging.getLogger(__name__)


class IngestMember:
    """Runs ``name``'s share of the ingest of ``resource``: events go to ``handler`` (``handler_many`` for
    batches), as the leader's informer would give them; ``cache`` must record uid hashes."""

    def __init__(self, name: str, resource: Resource, *, api_client: ApiClient, cache: CacheWriter,
                 handler: Handler, handler_many: BatchHandler | None = None,
                 namespaces: str | list[str] | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, transform: Transform | None = drop_managed_fields,
                 informer_options: Mapping[str, Any] | None = None) -> None:
        self.name, self.resource = name, resource
        self._api, self._cache = api_client, cache
        self._handler, self._handler_many = handler, handler_many
        self._options: dict[str, Any] = {"namespaces": namespaces, "label_selector": label_selector,
                                         "field_selector": field_selector, "transform": transform,
                                         **(informer_options or {})}
        self._informers: dict[HashRange, Informer] = {}
        self._lock = threading.Lock()
        self._synced_epoch: int | None = None
        self._stopped = False

    @property
    def synced_epoch(self) -> int | None:
        """The epoch of the latest applied plan whose ranges this member has all listed."""
        return self._synced_epoch

    @property
    def ranges(self) -> tuple[HashRange, ...]:
        """The ranges with a running informer (the plan's, plus any being handed over)."""
        with self._lock:
            return tuple(sorted(self._informers))

    def apply(self, plan: Plan) -> None:
        """Start informers for the ranges of ``plan`` this member lacks; once all of them have listed,
        stop the others and record ``plan.epoch`` as synced."""
        wanted = plan.watch.get(self.name, ())
        with self._lock:
            if self._stopped:
                return
            for hash_range in wanted:
                if hash_range not in self._informers:
                    self._informers[hash_range] = self._informer(hash_range).start()
                    log.info("ingest member %s: watching %s of %s (plan epoch %d)", self.name, hash_range,
                             self.resource.name, plan.epoch)
            if not all(self._informers[hash_range].has_synced for hash_range in wanted):
                return
            retired = [hash_range for hash_range in self._informers if hash_range not in wanted]
            for hash_range in retired:
                self._informers.pop(hash_range).stop(timeout=2.0)
                log.info("ingest member %s: no longer watching %s of %s", self.name, hash_range, self.resource.name)
            self._synced_epoch = plan.epoch

    def stop(self) -> None:
        """Stop every informer. Idempotent; :meth:`apply` does nothing afterwards."""
        with self._lock:
            self._stopped = True
            informers, self._informers = list(self._informers.values()), {}
        for informer in informers:
            informer.stop(timeout=2.0)

    def _informer(self, hash_range: HashRange) -> Informer:
        return Informer(self.resource, self._handler, api_client=self._api, shard_range=hash_range,
                        on_list_streamed=self._cache.list_hook_for(self.resource.name, hash_range),
                        handler_many=self._handler_many, name=f"{self.resource.name}@{hash_range}",
                        **self._options)
