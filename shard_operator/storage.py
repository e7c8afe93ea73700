"""The Redis boundary: every module that talks to Redis (queue, sharding, cache, jobs) wraps its calls
in :func:`redis_errors`, so callers see :class:`~shard_operator.errors.StorageError`, never redis-py's
exception tree."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from shard_operator.errors import StorageError

__all__ = ["redis_errors"]


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Translate ``redis.RedisError`` (connection, timeout, script and response errors) into StorageError."""
    try:
        yield
    except redis.RedisError as exc:
        raise StorageError(f"redis: {exc}") from exc
