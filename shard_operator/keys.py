"""Every Redis key name the project writes, built in one place from templates, for Python and for Lua.

Like rq's ``key_template = 'rq:wip:{0}'``, each key is a template filled after a prefix. A prefix
carries a Redis Cluster hash tag, so every key of one controller (or one cached kind) lands in one
slot and the Lua scripts, which touch several of them at once, also run on a cluster. The scripts
get their names from here too: :func:`lua_names` turns the templates into Lua (``K_dirty``,
``K_ready(shard)``), so one template change changes both sides.

The queue and the ring of one controller, under ``so:{<controller>}`` (:class:`Keys`)::

    :dirty             HASH  key -> time of the add that made it dirty (queue latency)
    :processing        HASH  key -> claim token of the worker processing it
    :deadlines         ZSET  key -> claim deadline (reap_expired re-queues past ones)
    :ready:<shard>     LIST  dirty keys not being processed, waiting for <shard>
    :pending           LIST  dirty keys queued while the ring had no live shard
    :notify:<shard>    LIST  at most one wake-up token for an idle ``get`` of <shard>
    :delayed           ZSET  key -> time it is due (add_after), promoted by ``get``
    :failures          HASH  key -> failures since the last forget (exponential backoff)
    :bucket            HASH  tokens, stamp: the global token bucket, taken at hand-out
    :seq               STRING counter making claim tokens unique
    :members           ZSET  shard id -> last heartbeat
    :ring              LIST  the live shard ids of the current epoch, sorted
    :epoch             STRING the ring's epoch, bumped on every change
    :slots             HASH  slot (0..16383, decimal) -> shard id under the current ring: the routing
                             table every script reads (absent while the ring is empty)
    :ring-next         LIST  the live shard ids of the next ring, while its slot table is built
    :slots-next        HASH  the slot table being built for :ring-next, filled in slot order; it
                             replaces :slots (and :ring-next the ring) when all 16,384 slots are in
    :rebalancing       HASH  list ('' = pending, else a shard id) -> entries a rebalance still has to scan
    :cache-marker      STRING written by the leader before its informers fill the cache; its
                       absence means Redis lost its data, and the leader relists
    :jobs:<key>        HASH  job name -> {"id", "generation"} of the object's current RQ job
    :errors            HASH  key -> the last reconcile error of a retrying key ("ExcType: message")
    :scope             STRING JSON: the namespaces the leader watches now (workers skip other keys)
    :ingest:plan       STRING JSON: sharded ingest, which member watches which uid-hash range
    :ingest:members    ZSET  ingest member (a manager) -> last heartbeat
    :ingest:synced     HASH  ingest member -> the latest plan epoch whose ranges it has listed
    :ingest:marker:<member>  STRING a token the member wrote when it (re)started its informers: gone
                       or changed means Redis lost its data, and the member relists

The shared object cache of one kind, under ``so:cache:{<kind>}`` (``<kind>`` is
``Resource.name``, e.g. ``widgets.v1.example.com``; a key is ``namespace/name`` or ``name``)::

    :objects           HASH  key -> object JSON
    :versions          HASH  key -> resourceVersion
    :owners            HASH  key -> owner uids, comma-separated (to unindex on change)
    :ns:<namespace>    SET   keys of the kind in the namespace
    :owner:<uid>       SET   keys whose ownerReferences name <uid>
    :replace:<token>   SET   keys of a relist in progress (deleted when it ends)
    :hashes            HASH  key -> uid hash, 16 hex digits (sharded ingest only: a ranged relist's scope)
    :tombstone:<key>   STRING resourceVersion of the key's deletion, for a few minutes (sharded ingest only:
                       an older event from another member's overlapping informer cannot resurrect it)

The RQ job workers, shared by every controller::

    so:jobs:alive:<worker name>  STRING set with a short TTL while that job worker lives
    so:jobs:sweep:<rq queue>     STRING lock held by the one process sweeping that queue

rq builds its own ``rq:*`` keys from the identifiers named here: the rq queue of a controller's jobs,
``shard-operator.<controller>`` (:func:`controller_queue`; rq's list ``rq:queue:shard-operator.<controller>``),
and the deterministic id of each job (:func:`job_id`; rq's hash ``rq:job:<id>``).
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass

__all__ = [
    "CACHE_PREFIX", "CACHE_TEMPLATES", "DEFAULT_NAMESPACE", "DEFAULT_QUEUE", "QUEUE_TEMPLATES", "Keys", "alive_key",
    "controller_queue", "hashes_key", "index_key", "job_id", "kind_prefix", "lua_names", "namespace_key",
    "objects_key", "owner_key", "replace_key", "sweep_lock_key", "validate_shard_id", "versions_key",
]

DEFAULT_NAMESPACE = "so"
CACHE_PREFIX = f"{DEFAULT_NAMESPACE}:cache"

#: name -> template after ``<controller prefix>:``; ``{field}`` is filled by the caller.
QUEUE_TEMPLATES: dict[str, str] = {
    "dirty": "dirty",
    "processing": "processing",
    "deadlines": "deadlines",
    "ready": "ready:{shard}",
    "pending": "pending",
    "notify": "notify:{shard}",
    "delayed": "delayed",
    "failures": "failures",
    "bucket": "bucket",
    "seq": "seq",
    "members": "members",
    "ring": "ring",
    "epoch": "epoch",
    "slots": "slots",
    "ring_next": "ring-next",
    "slots_next": "slots-next",
    "rebalancing": "rebalancing",
    "cache_marker": "cache-marker",
    "job_index": "jobs:{key}",
    "errors": "errors",
    "scope": "scope",
    "ingest_plan": "ingest:plan",
    "ingest_members": "ingest:members",
    "ingest_synced": "ingest:synced",
    "ingest_marker": "ingest:marker:{member}",
}

#: name -> template after ``so:cache:{<kind>}:``.
CACHE_TEMPLATES: dict[str, str] = {
    "objects": "objects",
    "versions": "versions",
    "owners": "owners",
    "namespace": "ns:{namespace}",
    "owner": "owner:{uid}",
    "replace": "replace:{token}",
    "hashes": "hashes",
    "tombstone": "tombstone:{key}",
}

_FORBIDDEN = set("{}| \t\r\n")


def validate_shard_id(shard: str) -> str:
    """Return ``shard`` if it can name a shard (non-empty, no braces, ``|`` or white space)."""
    if not shard or _FORBIDDEN & set(shard):
        raise ValueError(f"invalid shard id {shard!r}: non-empty, without braces, '|' or white space")
    return shard


def lua_names(templates: dict[str, str]) -> str:
    """Lua that names keys exactly as the Python side does, after the prefix the script gets in ``ARGV[1]``.

    A template without fields becomes a string (``K_dirty``), one with fields a function taking them
    in order (``K_ready(shard)``); ``P`` is the prefix including its trailing ``:``.
    """
    lines = ["local P = ARGV[1]"]
    for name, template in templates.items():
        parts, fields = [], []
        for literal, field, _, _ in string.Formatter().parse(template):
            if literal:
                if "'" in literal or "\\" in literal:
                    raise ValueError(f"template {template!r} cannot be quoted for Lua")
                parts.append(f"'{literal}'")
            if field is not None:
                parts.append(field)
                fields.append(field)
        body = " .. ".join(["P", *parts])
        if fields:
            lines.append(f"local function K_{name}({', '.join(fields)}) return {body} end")
        else:
            lines.append(f"local K_{name} = {body}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one controller's queue, ring and job index.

    ``prefix`` must contain exactly one hash tag ``{...}`` so that all keys share a cluster slot;
    build it with :meth:`for_controller` unless a deployment needs its own layout. The scripts
    receive :attr:`script_prefix` as ``ARGV[1]`` and name keys with :data:`QUEUE_TEMPLATES`.
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

    @property
    def script_prefix(self) -> str:
        """What the Lua scripts get as ``ARGV[1]``: the prefix and its separator."""
        return f"{self.prefix}:"

    def _key(self, name: str, **fields: str) -> str:
        return self.script_prefix + QUEUE_TEMPLATES[name].format(**fields)

    @property
    def dirty(self) -> str:
        return self._key("dirty")

    @property
    def processing(self) -> str:
        return self._key("processing")

    @property
    def deadlines(self) -> str:
        return self._key("deadlines")

    @property
    def pending(self) -> str:
        return self._key("pending")

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
    def slots(self) -> str:
        return self._key("slots")

    @property
    def ring_next(self) -> str:
        return self._key("ring_next")

    @property
    def slots_next(self) -> str:
        return self._key("slots_next")

    @property
    def rebalancing(self) -> str:
        return self._key("rebalancing")

    @property
    def cache_marker(self) -> str:
        return self._key("cache_marker")

    @property
    def errors(self) -> str:
        return self._key("errors")

    @property
    def scope(self) -> str:
        return self._key("scope")

    @property
    def ingest_plan(self) -> str:
        return self._key("ingest_plan")

    @property
    def ingest_members(self) -> str:
        return self._key("ingest_members")

    @property
    def ingest_synced(self) -> str:
        return self._key("ingest_synced")

    def ingest_marker(self, member: str) -> str:
        return self._key("ingest_marker", member=member)

    def ready(self, shard: str) -> str:
        return self._key("ready", shard=validate_shard_id(shard))

    def notify(self, shard: str) -> str:
        return self._key("notify", shard=validate_shard_id(shard))

    def job_index(self, key: str) -> str:
        return self._key("job_index", key=key)


# The shared cache: one prefix per kind; the cache's scripts get ``kind_prefix(kind)`` as ``ARGV[1]``.

def kind_prefix(kind: str) -> str:
    """The prefix of every cache key of ``kind``, including the trailing ``:``."""
    if not kind or any(char in kind for char in "{}: "):
        raise ValueError(f"invalid cache kind {kind!r}: it must be non-empty, without braces, colons, spaces")
    return f"{CACHE_PREFIX}:{{{kind}}}:"


def _cache_key(kind: str, name: str, **fields: str) -> str:
    return kind_prefix(kind) + CACHE_TEMPLATES[name].format(**fields)


def objects_key(kind: str) -> str:
    return _cache_key(kind, "objects")


def versions_key(kind: str) -> str:
    return _cache_key(kind, "versions")


def namespace_key(kind: str, namespace: str) -> str:
    return _cache_key(kind, "namespace", namespace=namespace)


def owner_key(kind: str, owner_uid: str) -> str:
    return _cache_key(kind, "owner", uid=owner_uid)


def hashes_key(kind: str) -> str:
    """key -> the uid hash of the cached object (16 hex digits), kept by a writer of a sharded ingest."""
    return _cache_key(kind, "hashes")


def replace_key(kind: str, token: str) -> str:
    return _cache_key(kind, "replace", token=token)


# The jobs layer: our keys, and the identifiers rq turns into its ``rq:*`` keys.

#: The rq queue jobs go to unless ``queue=`` says otherwise.
DEFAULT_QUEUE = "shard-operator"

_RQ_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def controller_queue(controller: str) -> str:
    """The rq queue of one controller's jobs under the manager: its job workers serve no other, so a
    worker never meets a task name another operator registered."""
    return f"{DEFAULT_QUEUE}.{controller}"


def job_id(controller: str, key: str, generation: int | str, name: str) -> str:
    """The deterministic rq job id of (controller, object key, generation, job name).

    rq ids allow only letters, digits, ``_`` and ``-``: a readable prefix plus a hash of the four parts.
    """
    digest = hashlib.sha256("\x1f".join((controller, key, str(generation), name)).encode()).hexdigest()[:32]
    return f"so-{_RQ_UNSAFE.sub('_', controller)[:40]}-{digest}"


def index_key(controller: str, key: str) -> str:
    """The hash of the current RQ job per job name of the object ``key`` of ``controller``."""
    return Keys.for_controller(controller).job_index(key)


def alive_key(worker_name: str) -> str:
    """Set with a short TTL while the job worker ``worker_name`` lives."""
    return f"{DEFAULT_NAMESPACE}:jobs:alive:{worker_name}"


def sweep_lock_key(queue: str) -> str:
    """The lock of the one process sweeping the rq queue ``queue``."""
    return f"{DEFAULT_NAMESPACE}:jobs:sweep:{queue}"
