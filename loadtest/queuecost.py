"""Redis time per key or per item of the work queue, from Redis's own ``INFO commandstats``.

Client-side timings on a shared 2-core machine swing several times between runs; the microseconds
Redis spends inside the queue's scripts do not depend on the client, so they compare two versions of
the code on one machine, in one run. Two measures::

    python -m loadtest.queuecost routing     # add_many of 20,000 keys at 4, 16, 64 and 256 shards
    python -m loadtest.queuecost reconcile   # W=2 workers, no-op reconciler: one key per claim vs batch 16

``routing``: Redis µs per key = ``usec`` of ``evalsha`` + ``eval`` + ``fcall`` during one ``add_many``
of ``--keys`` new keys onto a ring of N live shards, divided by the keys; also the ring change's cost
(the join of N shards: script calls and the longest script in SLOWLOG). ``reconcile``: Redis µs per
item = the same ``usec`` (plus ``blpop``) while ``--workers`` worker loops (threads running
:func:`~shard_operator.worker.pool.run_shard_worker`, one shard each) reconcile ``--items`` preloaded
keys with a no-op reconciler, divided by the items; ``--batch`` gives the claim batch of the second row.

``--baseline-src DIR`` runs the same measure against another checkout (``git worktree add /tmp/qs-base
main``) in the same run, against the same redis-server, alternating old and new per repeat; each
measure runs in a child interpreter whose ``PYTHONPATH`` is that checkout, so each imports its own
``shard_operator``. Medians of ``--repeat`` runs; JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_COMMANDS = ("evalsha", "eval", "fcall", "fcall_ro", "evalsha_ro", "eval_ro")


def script_usec(client: Any, extra: tuple[str, ...] = ()) -> tuple[int, int]:
    """(usec, calls) of the script commands (and ``extra``) since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    usec = calls = 0
    for name in (*SCRIPT_COMMANDS, *extra):
        entry = stats.get(f"cmdstat_{name}")
        if entry:
            usec += int(entry["usec"])
            calls += int(entry["calls"])
    return usec, calls


# -- measures: run in a child interpreter, importing the shard_operator of PYTHONPATH ----------------

def measure_routing(url: str, shard_counts: list[int], keys_per_run: int, run: int) -> list[dict[str, Any]]:
    import redis

    from shard_operator.keys import Keys
    from shard_operator.queue import WorkQueue
    from shard_operator.sharding import Assigner, Membership

    client = redis.Redis.from_url(url)
    rows = []
    for count in shard_counts:
        client.flushdb()
        keys = Keys.for_controller("cost")
        for i in range(count):
            Membership(client, keys, f"pod-{i // 4}-w{i % 4}").heartbeat()
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 100_000)
        client.slowlog_reset()
        client.config_resetstat()
        started = time.perf_counter()
        Assigner(client, keys, member_ttl=600.0).rebalance()
        join_s = time.perf_counter() - started
        join_usec, join_calls = script_usec(client)
        scripts_logged = [entry for entry in client.slowlog_get(100_000)
                          if entry["command"].split(b" ")[0].lower() in (b"evalsha", b"eval")]
        durations = sorted(entry["duration"] for entry in scripts_logged) or [0]
        client.config_set("slowlog-log-slower-than", 10_000)
        assert client.llen(keys.ring) == count
        queue = WorkQueue(client, keys, bucket=None)
        queue.add("warm/up")  # loads the script
        names = [f"ns{i % 50}/object-{run}-{i}" for i in range(keys_per_run)]
        client.config_resetstat()
        queue.add_many(names)
        usec, calls = script_usec(client)
        assert queue.len() == keys_per_run + 1
        rows.append({"shards": count, "keys": keys_per_run, "us_per_key": round(usec / keys_per_run, 3),
                     "script_calls": calls, "join_script_calls": join_calls,
                     "join_script_ms": round(join_usec / 1000, 1),
                     "join_longest_script_ms": round(durations[-1] / 1000, 2),
                     "join_median_script_ms": round(durations[len(durations) // 2] / 1000, 2),
                     "join_wall_s": round(join_s, 3)})
    client.close()
    return rows


def measure_reconcile(url: str, workers: int, items: int, batch: int, run: int) -> dict[str, Any]:
    import redis

    from shard_operator.keys import Keys
    from shard_operator.queue import WorkQueue
    from shard_operator.sharding import Assigner, Membership
    from shard_operator.worker.pool import WorkerSpec, run_shard_worker

    client = redis.Redis.from_url(url)
    client.flushdb()
    controller = "cost"
    keys = Keys.for_controller(controller)
    shards = [f"c{i}" for i in range(workers)]
    for shard in shards:
        Membership(client, keys, shard).heartbeat()
    Assigner(client, keys, member_ttl=600.0).rebalance()
    names = [f"ns{i % 50}/object-{run}-{i}" for i in range(items)]
    WorkQueue(client, keys, bucket=None).add_many(names)
    seen = [0]
    lock = threading.Lock()
    finished = threading.Event()

    def reconcile(request: Any, ctx: Any) -> None:
        with lock:
            seen[0] += 1
            if seen[0] >= items:
                finished.set()

    options: dict[str, Any] = {"controller": controller, "redis_url": url, "bucket": None, "get_timeout": 0.5,
                               "heartbeat_interval": 5.0, "threads": max(batch, 1)}
    if batch > 1:
        options["batch"] = batch
    stops = [threading.Event() for _ in shards]
    client.config_resetstat()
    started = time.perf_counter()
    threads = [threading.Thread(target=run_shard_worker, args=(WorkerSpec(shard=shard, **options), reconcile, stop),
                                daemon=True) for shard, stop in zip(shards, stops, strict=True)]
    for thread in threads:
        thread.start()
    if not finished.wait(300):
        raise SystemExit(f"only {seen[0]} of {items} items were reconciled in 300 s")
    seconds = time.perf_counter() - started
    usec, calls = script_usec(client)
    blpop_usec, _ = script_usec(client, ("blpop",))
    for stop in stops:
        stop.set()
    for thread in threads:
        thread.join(10)
    client.close()
    return {"workers": workers, "batch": batch, "items": items, "us_per_item": round(usec / items, 2),
            "script_calls_per_item": round(calls / items, 3),
            "us_per_item_with_blpop": round(blpop_usec / items, 2), "seconds": round(seconds, 2)}


def child_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    if spec["measure"] == "routing":
        result: Any = measure_routing(spec["url"], spec["shards"], spec["keys"], spec["run"])
    else:
        result = measure_reconcile(spec["url"], spec["workers"], spec["items"], spec["batch"], spec["run"])
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def run_child(src: Path, spec: dict[str, Any]) -> Any:
    """Run one measure in a child interpreter that imports ``shard_operator`` from ``src``."""
    # Not ``python loadtest/queuecost.py``: the script's folder would come first on sys.path, and
    # loadtest/queue.py would shadow the standard library's queue.
    here = str(Path(__file__).resolve())
    boot = f"import runpy, sys; sys.path.insert(0, {str(src)!r}); runpy.run_path({here!r}, run_name='__main__')"
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([sys.executable, "-c", boot, "--child", json.dumps(spec)],
                          env=env, capture_output=True, text=True, timeout=900, cwd=src)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"the measure against {src} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


# -- the parent: one redis-server, old and new alternating, medians --------------------------------

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("measure", choices=["routing", "reconcile"])
    parser.add_argument("--shards", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, default=None, help="another checkout to measure alongside")
    parser.add_argument("--redis-url", default=None, help="use this Redis (its database is flushed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "loadtest" / "results" / f"queuecost-{args.measure}.json"

    from shard_operator.testing import RedisServer

    server = None if args.redis_url else RedisServer().start()
    url = args.redis_url or server.url  # type: ignore[union-attr]
    sources = {"new": ROOT} | ({"baseline": args.baseline_src.resolve()} if args.baseline_src else {})
    runs: list[dict[str, Any]] = []
    group = ("shards",) if args.measure == "routing" else ("batch",)
    value = "us_per_key" if args.measure == "routing" else "us_per_item"
    try:
        for run in range(args.repeat):
            for label, src in sources.items():
                if args.measure == "routing":
                    spec = {"measure": "routing", "url": url, "shards": args.shards, "keys": args.keys, "run": run}
                    for row in run_child(src, spec):
                        runs.append({"code": label, "run": run, **row})
                        print(json.dumps(runs[-1]), flush=True)
                else:
                    batches = [1] if label == "baseline" else [1, args.batch]
                    for batch in batches:
                        spec = {"measure": "reconcile", "url": url, "workers": args.workers, "items": args.items,
                                "batch": batch, "run": run}
                        runs.append({"code": label, "run": run, **run_child(src, spec)})
                        print(json.dumps(runs[-1]), flush=True)
    finally:
        if server is not None:
            server.stop()

    summary = []
    for label in sources:
        for point in sorted({tuple(r[g] for g in group) for r in runs if r["code"] == label}):
            mine = [r for r in runs if r["code"] == label and tuple(r[g] for g in group) == point]
            row = {"code": label, **dict(zip(group, point, strict=True))}
            for field in mine[0]:
                if field not in ("code", "run", *group) and isinstance(mine[0][field], int | float):
                    row[field] = statistics.median(r[field] for r in mine)
            row[f"{value}_min"] = min(r[value] for r in mine)  # the least disturbed run on a shared machine
            summary.append(row)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "commit": _commit(ROOT),
               "baseline_commit": _commit(args.baseline_src) if args.baseline_src else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measure": args.measure, "machine": machine, "argv": argv, "summary": summary,
                               "runs": runs}, indent=2) + "\n")
    print(f"\nmedian of {args.repeat} runs, Redis µs per {'key' if args.measure == 'routing' else 'item'} "
          f"(INFO commandstats):")
    columns = [c for c in summary[0] if c != "code"]
    print("| code | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (len(columns) + 1))
    for row in summary:
        print(f"| {row['code']} | " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    print(f"saved {out}; the figure compared: {value}")
    return 0


def _commit(src: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
