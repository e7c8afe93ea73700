"""This pod's share of a sharded ingest (``--sharded-ingest``): its ingest member, driven by the plan
the leader publishes (:mod:`shard_operator.ingest`).

Every manager runs one :class:`IngestRunner` for the primary resource, leader or not; the leader's
:class:`~.leading.LeaderRunner` then runs no informer for it and publishes the plan instead. Each tick
(every ``coordinate_interval``) the runner heartbeats, applies the published plan and reports the
epoch it has listed. Its events go through an :class:`~shard_operator.dispatching.EventDispatcher`,
as the leader's would: shared cache first (recording uid hashes, so each range's relists replace only
that range), then the primary resource's handlers, then the queue.

Redis losing its data (I5): the runner keeps a marker token in Redis; when it is gone or changed, the
member is started afresh, so its informers relist and refill the cache and the queue.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING

from shard_operator.cache import CacheWriter
from shard_operator.dispatching import EventDispatcher
from shard_operator.errors import ApiError, ConfigError, ShardingUnsupportedError, ShardOperatorError
from shard_operator.ingest import IngestMember, IngestRegistry
from shard_operator.keys import Keys
from shard_operator.queue import RateLimitingQueue
from shard_operator.source import ApiListWatch, HashRange, Resource
from shard_operator.storage import redis_errors

if TYPE_CHECKING:
    import redis
    from kubernetes.client import ApiClient

    from shard_operator.config import Config
    from shard_operator.operator import Operator

__all__ = ["IngestRunner"]

log = logging.getLogger(__name__)


class IngestRunner:
    """Runs this pod's ingest member of ``operator``'s primary resource until :meth:`stop`."""

    def __init__(self, operator: Operator, config: Config, api_client: ApiClient, client: redis.Redis) -> None:
        self.operator, self.config = operator, config
        self._api, self._client = api_client, client
        keys = Keys.for_controller(operator.name)
        self.registry = IngestRegistry(client, keys, member_ttl=config.member_ttl)
        self._marker = keys.ingest_marker(config.pod_name)
        self._token = ""
        resource = operator.resource
        self._dispatcher = EventDispatcher(resource.name, operator.handlers_by_resource()[resource],
                                           cache=CacheWriter(client, uid_hashes=True),
                                           queue=RateLimitingQueue(client, keys, bucket=None),
                                           controller=operator.name)
        self._member: IngestMember | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_supported(self) -> None:
        """Raise :class:`ConfigError` when the API server shows it ignores shard selectors: asked for a
        range that no real uid hashes into, it answers an object. The primary resource is asked first;
        when its answer proves nothing (empty, and no echo: Kubernetes 1.37 echoes none for custom
        resources), the namespaces are (there are always some, and built-in lists echo the selector);
        if that is forbidden, the member's lists and watches check every object against its range."""
        namespaces = self._namespaces()
        primary = self._probe(self.operator.resource, namespaces[0] if namespaces else None)
        if primary is None:
            try:
                self._probe(Resource("", "v1", "namespaces", namespaced=False), None)
            except ApiError as exc:
                log.warning("--sharded-ingest: cannot tell yet whether the API server honours shard selectors "
                            "(%s); every object listed or watched is checked against its range", exc)

    def _probe(self, resource: Resource, namespace: str | None) -> bool | None:
        probe = ApiListWatch(self._api, resource, shard_range=HashRange(0, 1))
        try:
            probe.list(namespace, limit=1, continue_token=None)
        except ShardingUnsupportedError as exc:
            raise ConfigError(f"--sharded-ingest: {exc}") from None
        except ApiError as exc:
            if resource != self.operator.resource:
                raise
            raise ConfigError(f"--sharded-ingest: cannot list {resource.name} to check that the "
                              f"API server honours shard selectors: {exc}") from None
        return probe.server_sharded

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self.operator.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the member's informers and leave, so the next plan hands its ranges over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._member is not None:
            self._member.stop()
        try:
            self.registry.leave(self.config.pod_name)
        except ShardOperatorError as exc:  # Redis is gone: the heartbeat expires instead
            log.warning("ingest member %s: cannot leave (%s)", self.config.pod_name, exc)

    def tick(self) -> None:
        """One step: (re)start the member if Redis lost its marker, then heartbeat, apply and report."""
        current = self._client.get(self._marker)
        if self._member is None or current is None or current.decode() != self._token:
            if self._member is not None:
                log.warning("ingest member %s: Redis lost its data; relisting", self.config.pod_name)
                self._member.stop()
            self._member = self._new_member()
            self._token = uuid.uuid4().hex
            self._client.set(self._marker, self._token)
        self.registry.member_tick(self._member)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with redis_errors():  # a Redis failure is a StorageError, as everywhere above storage
                    self.tick()
            except ShardOperatorError as exc:  # StorageError included
                log.warning("ingest member %s: %s", self.config.pod_name, exc)
            self._stop.wait(self.config.coordinate_interval)

    def _new_member(self) -> IngestMember:
        config, operator = self.config, self.operator
        return IngestMember(config.pod_name, operator.resource, api_client=self._api,
                            cache=self._dispatcher.cache, handler=self._dispatcher,
                            handler_many=self._dispatcher.dispatch_many, namespaces=self._namespaces(),
                            label_selector=config.label_selector or operator.label_selector,
                            field_selector=config.field_selector or operator.field_selector,
                            transform=operator.transform)

    def _namespaces(self) -> list[str] | None:
        namespaces = self.config.namespaces if self.config.namespaces is not None else self.operator.namespaces
        if namespaces is None or not self.operator.resource.namespaced:
            return None
        return list(namespaces)
