"""Redis key names of the shared object cache, built in one place (to merge into ``shard_operator.keys``).

Every key of one kind shares the hash tag ``{kind}``, so the cache's Lua scripts, which touch several
keys of a kind at once, also run on Redis Cluster::

    so:cache:{<kind>}:objects          HASH  key -> object JSON
    so:cache:{<kind>}:versions         HASH  key -> resourceVersion
    so:cache:{<kind>}:owners           HASH  key -> owner uids, comma-separated (to unindex on change)
    so:cache:{<kind>}:ns:<namespace>   SET   keys of the kind in the namespace
    so:cache:{<kind>}:owner:<uid>      SET   keys whose ownerReferences name <uid>
    so:cache:{<kind>}:replace:<token>  SET   keys of a relist in progress (deleted when it ends)

``<kind>`` is :attr:`shard_operator.source.Resource.name` (``widgets.v1.example.com``); a key is
``namespace/name``, or ``name`` for cluster-scoped objects.
"""

from __future__ import annotations

__all__ = ["kind_prefix", "namespace_key", "objects_key", "owner_key", "replace_key", "versions_key"]

PREFIX = "so:cache"


def kind_prefix(kind: str) -> str:
    """The prefix of every key of ``kind``; the Lua scripts append the rest."""
    if not kind or any(char in kind for char in "{}: "):
        raise ValueError(f"invalid cache kind {kind!r}: it must be non-empty, without braces, colons, spaces")
    return f"{PREFIX}:{{{kind}}}:"


def objects_key(kind: str) -> str:
    return kind_prefix(kind) + "objects"


def versions_key(kind: str) -> str:
    return kind_prefix(kind) + "versions"


def namespace_key(kind: str, namespace: str) -> str:
    return kind_prefix(kind) + f"ns:{namespace}"


def owner_key(kind: str, owner_uid: str) -> str:
    return kind_prefix(kind) + f"owner:{owner_uid}"


def replace_key(kind: str, token: str) -> str:
    return kind_prefix(kind) + f"replace:{token}"
