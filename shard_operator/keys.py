"""Every Redis key name of the work queue and the shard ring, built in one place from templates.

Like rq's ``key_template = 'rq:wip:{0}'``, each key is a template filled with a prefix. The prefix
carries a Redis Cluster hash tag, ``so:{<controller>}``, so every key of one controller lands in the
same slot and the queue's Lua scripts, which touch several of them at once, also run on a cluster::

    <prefix>:dirty             HASH  key -> time of the add that made it dirty (queue latency)
    <prefix>:processing        HASH  key -> claim token of the worker processing it
    <prefix>:deadlines         ZSET  key -> claim deadline (reap_expired re-queues past ones)
    <prefix>:ready:<shard>     LIST  dirty keys not being processed, waiting for <shard>
    <prefix>:pending           LIST  dirty keys queued while the ring had no live shard
    <prefix>:notify:<shard>    LIST  at most one wake-up token for an idle ``get`` of <shard>
    <prefix>:delayed           ZSET  key -> time it is due (add_after), promoted by ``get``
    <prefix>:failures          HASH  key -> failures since the last forget (exponential backoff)
    <prefix>:bucket            HASH  tokens, stamp: the global token bucket, taken at hand-out
    <prefix>:seq               STRING counter making claim tokens unique
    <prefix>:members           ZSET  shard id -> last heartbeat
    <prefix>:ring              LIST  the live shard ids of the current epoch, sorted
    <prefix>:epoch             STRING the ring's epoch, bumped on every change
    <prefix>:cache-marker      STRING written by the leader before its informers fill the cache; its
                               absence means Redis lost its data, and the leader relists

The shared object cache keeps its own keys in :mod:`shard_operator.cache.keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_NAMESPACE", "Keys", "validate_shard_id"]

DEFAULT_NAMESPACE = "so"

_FORBIDDEN = set("{}| \t\r\n")


def validate_shard_id(shard: str) -> str:
    """Return ``shard`` if it can name a shard (non-empty, no braces, ``|`` or white space)."""
    if not shard or _FORBIDDEN & set(shard):
        raise ValueError(f"invalid shard id {shard!r}: non-empty, without braces, '|' or white space")
    return shard


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one controller's queue and ring.

    ``prefix`` must contain exactly one hash tag ``{...}`` so that all keys share a cluster slot;
    build it with :meth:`for_controller` unless a deployment needs its own layout.
    """

    prefix: str

    def __post_init__(self) -> None:
        start, end = self.prefix.find("{"), self.prefix.find("}")
        if start < 0 or end <= start + 1 or self.prefix.count("{") != 1 or self.prefix.count("}") != 1:
            raise ValueError(f"key prefix {self.prefix!r} must contain one non-empty hash tag {{...}}")

    @classmethod
    def for_controller(cls, controller: str, namespace: str = DEFAULT_NAMESPACE) -> Keys:
        """``so:{<controller>}``: the keys of one controller, in one cluster slot."""
        if not controller or set("{}: ") & set(controller):
            raise ValueError(f"invalid controller name {controller!r}: no braces, colons or spaces")
        return cls(f"{namespace}:{{{controller}}}")

    def _key(self, template: str, *args: str) -> str:
        return f"{self.prefix}:" + template.format(*args)

    @property
    def dirty(self) -> str:
        return self._key("dirty")

    @property
    def processing(self) -> str:
        return self._key("processing")

    @property
    def deadlines(self) -> str:
        return self._key("deadlines")

    def ready(self, shard: str) -> str:
        return self._key("ready:{0}", validate_shard_id(shard))

    @property
    def ready_prefix(self) -> str:
        """What the Lua scripts prepend to a shard id to name its ready list."""
        return self._key("ready:")

    @property
    def pending(self) -> str:
        return self._key("pending")

    def notify(self, shard: str) -> str:
        return self._key("notify:{0}", validate_shard_id(shard))

    @property
    def notify_prefix(self) -> str:
        return self._key("notify:")

    @property
    def delayed(self) -> str:
        return self._key("delayed")

    @property
    def failures(self) -> str:
        return self._key("failures")

    @property
    def bucket(self) -> str:
        return self._key("bucket")

    @property
    def seq(self) -> str:
        return self._key("seq")

    @property
    def members(self) -> str:
        return self._key("members")

    @property
    def ring(self) -> str:
        return self._key("ring")

    @property
    def epoch(self) -> str:
        return self._key("epoch")

    @property
    def cache_marker(self) -> str:
        return self._key("cache-marker")
