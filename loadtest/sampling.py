"""Time series of a run: each operator pod's /metrics, its processes' CPU and memory, Redis INFO.

Where it sits: a thread beside the load generator in ``loadtest.runner``. Every second :class:`Sampler`
polls each pod's ``/metrics`` (queue depth, queue latency, reconcile time and count), ``/proc`` of each
pod's process tree (CPU seconds, RSS) and Redis ``INFO`` (memory, ops/s); every 5 s the API server's
request counters (summed across API server restarts).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.environment import OperatorPod, process_tree

__all__ = ["Sampler", "buckets", "histogram_quantile", "parse_metrics"]

_CLK_TCK = 100.0


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            try:
                samples[(name, labels.rstrip("}"))] = float(value)
            except ValueError:
                continue
    return samples


def _sum(samples: dict[tuple[str, str], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def buckets(samples: dict[tuple[str, str], float], name: str) -> dict[float, float]:
    found: dict[float, float] = defaultdict(float)
    for (n, labels), value in samples.items():
        if n == f"{name}_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                found[float(le.group(1))] += value
    return dict(found)


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The q-quantile of the observations between two cumulative bucket snapshots (upper bound of the
    bucket it falls in, as Prometheus does without interpolation past the last finite bound)."""
    bounds = sorted(after)
    deltas = [after[b] - before.get(b, 0.0) for b in bounds]
    if not deltas or deltas[-1] <= 0:
        return None
    target = q * deltas[-1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, deltas, strict=True):
        if count >= target:
            if bound == float("inf"):
                return previous_bound
            span = count - previous_count
            fraction = (target - previous_count) / span if span > 0 else 1.0
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, count
    return previous_bound


def _proc_stats(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, RSS MiB) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK, rss_pages * 4096 / 2**20


class Sampler(threading.Thread):
    """Polls pods, their processes and Redis every ``interval`` seconds into ``series`` (one dict per tick)."""

    def __init__(self, pods: list[OperatorPod], redis_client: Any, interval: float = 1.0,
                 apiserver: Callable[[], dict[str, float]] | None = None, apiserver_every: int = 5) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pods, self.redis, self.interval = pods, redis_client, interval
        self.apiserver, self.apiserver_every = apiserver, apiserver_every
        self.apiserver_requests: dict[str, float] = defaultdict(float)
        self._apiserver_last: dict[str, float] | None = None
        self._ticks = 0
        self.series: list[dict[str, Any]] = []
        self.cpu_by_pid: dict[int, float] = {}
        self.rss_peak_by_role: dict[str, float] = defaultdict(float)
        # Per process: "<pod>/manager/<pid>", "<pod>/worker/<pid>" (a restarted worker is a new pid).
        self.rss_peak_by_process: dict[str, float] = defaultdict(float)
        self._stop_event = threading.Event()
        self._last: dict[str, Any] = {}

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.series.append(self.sample())
                self._ticks += 1
                if self._ticks % self.apiserver_every == 0:
                    self.count_apiserver_requests()
            except Exception as exc:  # a sample lost to a fault is a gap in the series, not a failed run
                self.series.append({"t": time.time(), "error": str(exc)})

    def count_apiserver_requests(self) -> None:
        """Add the API server's request counters since the last call (a restarted server starts at 0)."""
        if self.apiserver is None:
            return
        now = self.apiserver()
        if not now:
            return
        last = self._apiserver_last
        for verb, value in now.items():
            before = (last or {}).get(verb, 0.0) if last is not None else value
            self.apiserver_requests[verb] += value if value < before else value - before
        self._apiserver_last = now

    def scrape(self) -> dict[tuple[str, str], float]:
        merged: dict[tuple[str, str], float] = defaultdict(float)
        for pod in list(self.pods):
            if pod.metrics_port is None or pod.pid is None:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{pod.metrics_port}/metrics", timeout=2) as r:
                    for key, value in parse_metrics(r.read().decode()).items():
                        merged[key] += value
            except OSError:
                continue
        return dict(merged)

    def sample(self) -> dict[str, Any]:
        now = time.time()
        metrics = self.scrape()
        point: dict[str, Any] = {"t": now}
        point["queue_depth"] = _sum(metrics, "workqueue_depth")
        point["reconciles_total"] = _sum(metrics, "controller_runtime_reconcile_total")
        point["reconcile_errors_total"] = _sum(metrics, "controller_runtime_reconcile_errors_total")
        queue_buckets = buckets(metrics, "workqueue_queue_duration_seconds")
        work_buckets = buckets(metrics, "controller_runtime_reconcile_time_seconds")
        last = self._last
        point["queue_latency_p99_s"] = histogram_quantile(last.get("queue", {}), queue_buckets, 0.99)
        point["reconcile_time_p99_s"] = histogram_quantile(last.get("work", {}), work_buckets, 0.99)
        if "t" in last and now > last["t"]:
            point["reconciles_per_s"] = max(0.0, point["reconciles_total"] - last["reconciles"]) / (now - last["t"])
        self._last = {"t": now, "queue": queue_buckets, "work": work_buckets, "reconciles": point["reconciles_total"]}
        point["queue_buckets"] = queue_buckets
        rss: dict[str, float] = {}
        for pod in list(self.pods):
            if pod.pid is None:
                continue
            for pid in process_tree(pod.pid):
                stats = _proc_stats(pid)
                if stats is None:
                    continue
                self.cpu_by_pid[pid] = stats[0]
                role = f"{pod.name}/{'manager' if pid == pod.pid else 'worker'}"
                rss[f"{role}/{pid}"] = round(stats[1], 1)
                self.rss_peak_by_role[role] = max(self.rss_peak_by_role[role], stats[1])
                self.rss_peak_by_process[f"{role}/{pid}"] = max(self.rss_peak_by_process[f"{role}/{pid}"], stats[1])
        point["rss_mb"] = rss
        point["rss_total_mb"] = round(sum(rss.values()), 1)
        point["cpu_s_total"] = round(sum(self.cpu_by_pid.values()), 2)
        try:
            info = self.redis.info()
            point["redis_used_memory_mb"] = round(info["used_memory"] / 2**20, 2)
            point["redis_ops_per_s"] = info["instantaneous_ops_per_sec"]
            point["redis_commands_total"] = info["total_commands_processed"]
        except Exception:
            pass
        return point
