"""The Redis boundary: how shard-operator opens Redis connections and the one place its errors are
translated.

Every module that talks to Redis (queue, sharding, cache, jobs) wraps its calls in
:func:`redis_errors`, so callers see :class:`~shard_operator.errors.StorageError`, never redis-py's
exception tree; processes above the storage modules (worker and job-worker processes, the manager)
open their clients with :func:`connect` instead of importing ``redis`` themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis

from shard_operator.errors import StorageError

__all__ = ["connect", "redis_errors"]


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Translate ``redis.RedisError`` (connection, timeout, script and response errors) into StorageError."""
    try:
        yield
    except redis.RedisError as exc:
        raise StorageError(f"redis: {exc}") from exc


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url`` with redis-py's ``from_url`` ``options``; it connects on first use.

    A malformed URL raises ``ValueError`` (as ``from_url`` does); connection errors surface later, as
    :class:`StorageError` from the modules that use the client.
    """
    return redis.Redis.from_url(url, **options)
