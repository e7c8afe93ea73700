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

__all__ = ["connect", "pipelined_script_calls", "redis_errors"]


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


def pipelined_script_calls(client: redis.Redis, script: Any, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
    """Run ``script`` (a redis-py ``Script``) once per ``(keys, args)`` in one pipelined round trip, in
    order; returns the results. Errors are raised (as redis-py's) after the whole pipeline ran.

    redis-py's own pipelining of ``Script`` objects sends ``SCRIPT EXISTS`` before every pipeline, a
    second round trip per batch; here the calls go as ``EVALSHA`` and only the calls that found the
    script missing (a restarted or flushed Redis) are sent again, after one ``SCRIPT LOAD``.
    """
    if len(calls) == 1:
        keys, args = calls[0]
        return [script(keys=keys, args=args)]
    results = _evalsha_pipeline(client, script, calls)
    missing = [index for index, result in enumerate(results) if isinstance(result, redis.exceptions.NoScriptError)]
    if missing:
        client.script_load(script.script)
        for index, result in zip(missing, _evalsha_pipeline(client, script, [calls[i] for i in missing]),
                                 strict=True):
            results[index] = result
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def _evalsha_pipeline(client: redis.Redis, script: Any, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    return list(pipe.execute(raise_on_error=False))
