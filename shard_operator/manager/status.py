"""What ``shard-operator status`` reports: the leader (from the Lease) and the queue's state (from Redis).

Everything is read, nothing written, so it is safe to run against a live deployment. For each retrying
key it shows the failures, when the key is due, and the last error a worker stored for it in the hash
``<prefix>:errors`` (key -> ``"ExcType: message"``, see :func:`errors_key`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shard_operator.errors import ApiError, NotFoundError
from shard_operator.jobs import job_summary
from shard_operator.keys import Keys, controller_queue
from shard_operator.leaderelection import LeaseLock
from shard_operator.queue import RateLimitingQueue
from shard_operator.sharding import live_members
from shard_operator.storage import redis_errors

if TYPE_CHECKING:
    import redis
    from kubernetes.client import ApiClient

__all__ = ["LAST_ERROR_LIMIT", "collect_status", "errors_key", "format_status"]

#: The longest last-error message shown (the worker stores at most this many characters too).
LAST_ERROR_LIMIT = 300


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def errors_key(keys: Keys) -> str:
    """``<prefix>:errors``: HASH key -> the last reconcile error of a retrying key, ``"ExcType: message"``."""
    return keys.errors


def collect_status(client: redis.Redis, controller: str, *, api_client: ApiClient | None = None,
                   lease: tuple[str, str] | None = None, member_ttl: float = 10.0) -> dict[str, Any]:
    """A JSON-able summary: leader, ring, live shards, depth per shard, in-flight and retrying keys.

    Raises :class:`~shard_operator.errors.StorageError` when Redis fails; a Lease that cannot be read is
    reported as ``leader_error``."""
    with redis_errors():  # a Redis failure is a StorageError, as everywhere above storage
        keys = Keys.for_controller(controller)
        queue = RateLimitingQueue(client, keys, bucket=None)
        ring = [_text(shard) for shard in client.lrange(keys.ring, 0, -1)]
        live = live_members(client, keys, member_ttl)
        shards = sorted(set(ring) | set(live))
        seconds, micros = client.time()  # due times are on the Redis clock (shard_operator.clock), not this host's
        now = seconds + micros / 1_000_000
        failures = {_text(key): int(count) for key, count in client.hgetall(keys.failures).items()}
        delayed = {_text(key): float(due) for key, due in client.zrange(keys.delayed, 0, -1, withscores=True)}
        errors = {_text(key): _text(text)[:LAST_ERROR_LIMIT] for key, text in client.hgetall(errors_key(keys)).items()}
        status: dict[str, Any] = {
            "controller": controller,
            "leader": None,
            "epoch": int(client.get(keys.epoch) or 0),
            "ring": ring,
            "live_shards": live,
            "queue_depth": {shard: queue.len(shard) for shard in shards},
            "pending": int(client.llen(keys.pending)),
            "dirty": int(client.hlen(keys.dirty)),
            "in_flight": sorted(_text(key) for key in client.hkeys(keys.processing)),
            "retrying": {key: {"failures": failures.get(key, 0),
                               "due_in": round(max(delayed[key] - now, 0.0), 3) if key in delayed else None,
                               "last_error": errors.get(key)}
                         for key in sorted(set(failures) | set(delayed))},
        }
        jobs = job_summary(client, controller, [controller_queue(controller)])
        status["jobs"] = {key: {"running": [s.name for s in found.running], "queued": [s.name for s in found.queued],
                                "failed": [{"name": s.name, "error": s.error} for s in found.failed]}
                          for key, found in sorted(jobs.items())}
    if api_client is not None and lease is not None:
        try:
            record = LeaseLock(api_client, *lease).get(10.0)
            status["leader"] = record.holder_identity or None
        except NotFoundError:
            status["leader"] = None
        except ApiError as exc:
            status["leader_error"] = str(exc)
    return status


def format_status(status: dict[str, Any]) -> str:
    """The human-readable form of :func:`collect_status`'s summary."""
    lines = [f"controller:  {status['controller']}",
             f"leader:      {status['leader'] or status.get('leader_error') or '(none)'}",
             f"ring:        epoch {status['epoch']}, {len(status['ring'])} shard(s)",
             f"live shards: {', '.join(status['live_shards']) or '(none)'}",
             f"queued:      {status['dirty']} dirty, {status['pending']} pending (no shard)"]
    for shard, depth in status["queue_depth"].items():
        lines.append(f"  {shard}: {depth} ready")
    lines.append(f"in flight:   {len(status['in_flight'])}")
    lines += [f"  {key}" for key in status["in_flight"]]
    lines.append(f"retrying:    {len(status['retrying'])}")
    for key, info in status["retrying"].items():
        due = f", due in {info['due_in']}s" if info["due_in"] is not None else ""
        last_error = f"; last error: {info['last_error']}" if info.get("last_error") else ""
        lines.append(f"  {key}: {info['failures']} failure(s){due}{last_error}")
    lines.append(f"jobs:        {len(status.get('jobs', {}))} object(s) with background jobs")
    for key, found in status.get("jobs", {}).items():
        failed = ", ".join(f"{f['name']} ({f['error']})" for f in found["failed"])
        lines.append(f"  {key}: running {', '.join(found['running']) or '-'}; "
                     f"queued {', '.join(found['queued']) or '-'}; failed {failed or '-'}")
    return "\n".join(lines)
