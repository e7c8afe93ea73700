"""The reconcile recorder: every reconcile of the lab's sample workload writes when it started and ended.

Where it sits: inside the operator under test (``loadtest.workload``), one recorder per worker process.
The invariant checker (``loadtest.checker``) reads the records after a run and proves I1 (no two
reconciles of a key overlap), I3 (collapse) and I4 (retries back off) from them.

A reconcile writes two records, so that one cut short by SIGKILL still leaves its start behind::

    {"ev": "start", "id": "<pid>-<n>", "key": "ns/name", "pid": 123, "shard": "pod-0-1",
     "claim": "<token or null>", "t": 1700000000.123}
    {"ev": "end", "id": "<pid>-<n>", "key": "ns/name", "pid": 123, "generation": 4,
     "outcome": "ok" | "noop" | "gone" | "conflict" | "fenced" | "error", "wrote": true, "t": 1700000000.140}

``outcome``: ``ok`` wrote the status, ``noop`` found it current, ``gone`` found no object, ``conflict``
had its write refused (409: it read a stale object), ``fenced`` did not write because its claim was
lost, ``error`` raised anything else. ``wrote`` (optional): whether the reconcile sent a write to the
API server, whatever came back; an ``error`` that never sent one had no effect (the checker reads it).

Sinks: a JSON-lines file (``file:///path``; each record is one ``write`` on an ``O_APPEND`` descriptor,
so processes never interleave) or a Redis list (``redis://host:port/db#run``: ``RPUSH loadtest:<run>:records``).
The runner passes the sink in ``LOADTEST_RECORD`` (the file sink by default: a Redis fault that loses
the data must not lose the evidence).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ENV", "Recorder", "Span", "read_records", "redis_list_key", "spans"]

ENV = "LOADTEST_RECORD"
OUTCOMES = ("ok", "noop", "gone", "conflict", "fenced", "error")


def redis_list_key(run: str) -> str:
    return f"loadtest:{run}:records"


class Recorder:
    """Writes start/end records to one sink; thread-safe; open it in the process that records (after fork)."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        parts = urlsplit(sink)
        self._fd: int | None = None
        self._redis: Any = None
        if parts.scheme == "file" or not parts.scheme:
            path = Path(parts.path if parts.scheme else sink)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        elif parts.scheme in ("redis", "rediss"):
            import redis

            self._redis = redis.Redis.from_url(sink.split("#", 1)[0], socket_timeout=5)
            self._list = redis_list_key(parts.fragment or "default")
        else:
            raise ValueError(f"recorder sink {sink!r}: use file:///path or redis://host:port/db#run")

    @classmethod
    def from_env(cls) -> Recorder | None:
        sink = os.environ.get(ENV)
        return cls(sink) if sink else None

    def start(self, key: str, *, shard: str | None = None, claim: str | None = None) -> str:
        """Record that a reconcile of ``key`` starts now; returns its id for :meth:`end`."""
        with self._lock:
            rid = f"{os.getpid()}-{next(self._ids)}"
        self._write({"ev": "start", "id": rid, "key": key, "pid": os.getpid(), "shard": shard,
                     "claim": None if claim is None else str(claim),
                     "t": time.time()})
        return rid

    def end(self, rid: str, key: str, *, outcome: str, generation: int | None = None,
            wrote: bool | None = None) -> None:
        """Record that reconcile ``rid`` ended now with ``outcome``; ``wrote``: whether it sent a write
        (None: not known)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        record: dict[str, Any] = {"ev": "end", "id": rid, "key": key, "pid": os.getpid(), "generation": generation,
                                  "outcome": outcome, "t": time.time()}
        if wrote is not None:
            record["wrote"] = wrote
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self._fd is not None:
            os.write(self._fd, line.encode())
        else:
            self._redis.rpush(self._list, line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._redis is not None:
            self._redis.close()


@dataclass(frozen=True)
class Span:
    """One reconcile as the checker sees it; ``end`` is None when its process died before it ended;
    ``wrote`` is whether it sent a write (None: not recorded)."""

    id: str
    key: str
    pid: int
    shard: str | None
    claim: str | None
    start: float
    end: float | None = None
    generation: int | None = None
    outcome: str | None = None
    wrote: bool | None = None


def spans(records: Iterable[dict[str, Any]]) -> list[Span]:
    """Pair start and end records into spans, ordered by start time."""
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for record in records:
        (starts if record["ev"] == "start" else ends)[record["id"]] = record
    found = []
    for rid, start in starts.items():
        end = ends.get(rid)
        found.append(Span(rid, start["key"], int(start["pid"]), start.get("shard"), start.get("claim"),
                          float(start["t"]), float(end["t"]) if end else None,
                          end.get("generation") if end else None, end.get("outcome") if end else None,
                          end.get("wrote") if end else None))
    return sorted(found, key=lambda span: span.start)


def read_records(sink: str) -> Iterator[dict[str, Any]]:
    """Every record a run's recorders wrote to ``sink`` (a half-written last line is skipped)."""
    parts = urlsplit(sink)
    if parts.scheme in ("redis", "rediss"):
        import redis

        client = redis.Redis.from_url(sink.split("#", 1)[0], socket_timeout=10)
        try:
            lines = [raw.decode() for raw in client.lrange(redis_list_key(parts.fragment or "default"), 0, -1)]
        finally:
            client.close()
    else:
        path = Path(parts.path if parts.scheme else sink)
        lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue
