"""The shard ring as readers see it: the sorted live shard ids of one epoch, and key → shard.

The :class:`~shard_operator.sharding.assigner.Assigner` is the only writer of the ring; the queue's
scripts read it inside Redis. :class:`Router` is the Python view, for code that needs a key's shard
outside a script (metrics, debugging, tests), cached per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from shard_operator.keys import Keys
from shard_operator.queue import hashing
from shard_operator.storage import redis_errors

__all__ = ["Ring", "Router", "redis_errors"]


@dataclass(frozen=True)
class Ring:
    """The live shards of one epoch; ``shard_for(key)`` is the key's slot's shard (rendezvous hashing of the
    slot over them, what the epoch's table in Redis holds), None if empty."""

    epoch: int
    shards: tuple[str, ...]
    _cache: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    def shard_for(self, key: str) -> str | None:
        try:
            return self._cache[key]
        except KeyError:
            shard = self._cache[key] = hashing.shard_for(self.shards, key)
            return shard


class Router:
    """Reads the ring published in Redis and maps keys to shards with it.

    ``ring()`` returns the cached ring; ``refresh()`` reads epoch and shards in one transaction and
    keeps the cached ring (and its per-key cache) when the epoch did not change.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys
        self._ring: Ring | None = None

    def refresh(self) -> Ring:
        with redis_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.get(self.keys.epoch)
            pipe.lrange(self.keys.ring, 0, -1)
            epoch_raw, ids = pipe.execute()
        epoch = int(epoch_raw or 0)
        if self._ring is None or self._ring.epoch != epoch:
            shards = tuple(i.decode() if isinstance(i, bytes) else i for i in ids)
            self._ring = Ring(epoch, shards)
        return self._ring

    def ring(self) -> Ring:
        return self._ring if self._ring is not None else self.refresh()

    def shard_for(self, key: str) -> str | None:
        return self.ring().shard_for(key)
