"""Work-queue benchmark: W worker processes with a no-op reconciler against a real redis-server.

For each W it runs two phases and prints one JSON line per phase (all saved to
``loadtest/results/queue.json``):

- ``peak``: a producer adds ``--items`` distinct keys as fast as it can (``add_many`` batches of 100)
  while the workers drain them; ``items_per_s`` = items / (time from the first add to the last
  reconcile start).
- ``half``: the producer is paced at half the peak rate of the same W; the queue latencies of this
  phase (reconcile start - add) are the ones the p99 target is about.

``redis_calls_per_item`` counts client round trips (one per command or pipeline sent, counted in
the connection class of every process) divided by items. The token bucket is disabled (the benchmark
measures the queue, not the configured rate limit). Usage::

    python -m loadtest.queue                      # W = 1, 2, 4; 3 repeats; medians reported
    python -m loadtest.queue --workers 1 2 4 8 16 --items 40000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import multiprocess
import redis

from shard_operator.keys import Keys
from shard_operator.queue import RateLimitingQueue
from shard_operator.reconcile import Request
from shard_operator.sharding import Assigner
from shard_operator.testing import RedisServer
from shard_operator.worker.pool import WorkerPool, WorkerSpec

CONTROLLER = "bench"
RESULTS = Path(__file__).resolve().parent / "results"

# Shared memory, created before the workers fork: round trips sent by any process, and the time each
# item's reconcile started (indexed by item number; distinct slots need no lock).
ROUND_TRIPS = multiprocess.Value("q", 0)
_STARTS: Any = None


class CountingConnection(redis.Connection):
    """A redis-py connection that counts what it sends: one packed send is one round trip."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        with ROUND_TRIPS.get_lock():
            ROUND_TRIPS.value += 1
        super().send_packed_command(command, check_health)


def noop_reconcile(request: Request, ctx: Any) -> None:
    _STARTS[int(request.name)] = time.time()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_phase(url: str, workers: int, items: int, rate: float | None, offset: int) -> dict[str, Any]:
    """Add ``items`` keys (paced at ``rate``/s, or unpaced) with ``workers`` processes consuming."""
    client = redis.Redis.from_url(url, connection_class=CountingConnection)
    client.flushdb()
    keys = Keys.for_controller(CONTROLLER)
    shards = [f"b{i}" for i in range(workers)]
    specs = [WorkerSpec(controller=CONTROLLER, shard=shard, redis_url=url, bucket=None, get_timeout=0.5,
                        heartbeat_interval=1.0, redis_options={"connection_class": CountingConnection})
             for shard in shards]
    pool = WorkerPool(specs, noop_reconcile)
    pool.start()
    assigner = Assigner(client, keys, member_ttl=5.0)
    deadline = time.monotonic() + 20
    while len(client.lrange(keys.ring, 0, -1)) < workers:
        assigner.rebalance()
        if time.monotonic() > deadline:
            raise SystemExit("workers did not join the ring")
        time.sleep(0.05)
    queue = RateLimitingQueue(client, keys, bucket=None)
    for i in range(items):
        _STARTS[i] = 0.0
    time.sleep(0.3)  # let every worker reach its idle wait
    added = [0.0] * items
    batch = 100
    before = ROUND_TRIPS.value
    started = time.time()
    for first in range(0, items, batch):
        if rate is not None:
            due = started + first / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
        names = [f"bench/{i}" for i in range(first, min(first + batch, items))]
        now = time.time()
        for i in range(first, first + len(names)):
            added[i] = now
        queue.add_many(names)
    while True:
        done = sum(1 for i in range(items) if _STARTS[i] > 0)
        if done == items and client.hlen(keys.processing) == 0:
            break
        if time.time() - started > 300:
            raise SystemExit(f"only {done} of {items} items were reconciled in 300 s")
        time.sleep(0.02)
    finished = max(_STARTS[i] for i in range(items))
    # The idle workers' polls between the last item and this line are not the items' cost; stop first.
    trips = ROUND_TRIPS.value - before
    pool.stop(timeout=10)
    client.close()
    latencies = [(_STARTS[i] - added[i]) * 1000 for i in range(items)]
    seconds = finished - started
    return {
        "workers": workers, "items": items, "seconds": round(seconds, 3),
        "items_per_s": round(items / seconds, 1),
        "queue_latency_p50_ms": round(percentile(latencies, 0.50), 2),
        "queue_latency_p99_ms": round(percentile(latencies, 0.99), 2),
        "redis_calls_per_item": round(trips / items, 3),
        "offered_rate": rate,
    }


def main(argv: list[str] | None = None) -> int:
    global _STARTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting redis-server")
    parser.add_argument("--out", type=Path, default=RESULTS / "queue.json")
    args = parser.parse_args(argv)
    if args.items < 100 or args.repeat < 1 or min(args.workers) < 1:
        parser.error("--items >= 100, --repeat >= 1, --workers >= 1")
    _STARTS = multiprocess.Array("d", args.items, lock=False)

    server = None if args.redis_url else RedisServer().start()
    url = args.redis_url or server.url  # type: ignore[union-attr]
    runs: list[dict[str, Any]] = []
    try:
        for workers in args.workers:
            for repeat in range(args.repeat):
                peak = run_phase(url, workers, args.items, None, 0) | {"phase": "peak", "repeat": repeat}
                print(json.dumps(peak), flush=True)
                half_rate = peak["items_per_s"] / 2
                half = run_phase(url, workers, args.items, half_rate, 0) | {"phase": "half", "repeat": repeat}
                print(json.dumps(half), flush=True)
                runs += [peak, half]
    finally:
        if server is not None:
            server.stop()

    summary = []
    for workers in args.workers:
        row: dict[str, Any] = {"workers": workers}
        for phase in ("peak", "half"):
            mine = [r for r in runs if r["workers"] == workers and r["phase"] == phase]
            for field in ("items_per_s", "queue_latency_p50_ms", "queue_latency_p99_ms", "redis_calls_per_item"):
                row[f"{phase}_{field}"] = statistics.median(r[field] for r in mine)
        summary.append(row)
    base = summary[0]["peak_items_per_s"] / summary[0]["workers"]
    for row in summary:
        row["scaling_efficiency"] = round(row["peak_items_per_s"] / (base * row["workers"]), 3)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "summary": summary, "runs": runs}, indent=2))
    print("median of", args.repeat, "repeats:")
    for row in summary:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
