"""Every Prometheus metric of shard-operator, defined once.

Names follow controller-runtime and client-go's workqueue so that existing dashboards work. Many
processes write them (workers, the leader, RQ workers): the manager sets ``PROMETHEUS_MULTIPROC_DIR``
before any child starts (:func:`enable_multiprocess`), and :func:`render` aggregates every process's
files for ``/metrics``. Gauges declare how processes combine (``livesum``, ``livemax``, …).

prometheus-client's own ``process_*`` collector is not available in multiprocess mode (it would report
only the process that serves ``/metrics``), so :class:`ProcessTreeCollector` reads ``/proc`` for the
manager and each supervised child at scrape time, one series per process labelled ``process``
(``manager``, ``worker-<shard>``, ``job-worker-<n>``): no thread and no file per process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client import values as _values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "ACTIVE_WORKERS",
    "API_REQUESTS",
    "CACHE_RELISTS",
    "CLAIM_EXPIRIES",
    "JOBS_COMPLETED",
    "JOBS_ENQUEUED",
    "JOBS_STARTED",
    "JOB_DURATION",
    "JOB_OUTCOMES",
    "JOB_QUEUE_DEPTH",
    "LEADER_STATUS",
    "LIVE_SHARDS",
    "QUEUE_ADDS",
    "QUEUE_DEPTH",
    "QUEUE_DURATION",
    "QUEUE_LONGEST_RUNNING",
    "QUEUE_RETRIES",
    "QUEUE_UNFINISHED_WORK",
    "QUEUE_WORK_DURATION",
    "RECONCILE_ERRORS",
    "RECONCILE_TIME",
    "RECONCILE_TOTAL",
    "REDIS_UP",
    "SHARD_ASSIGNMENTS",
    "SHARD_MOVEMENTS",
    "TERMINAL_RECONCILE_ERRORS",
    "ProcessTreeCollector",
    "enable_multiprocess",
    "mark_process_dead",
    "render",
    "track_process",
]

# client-go's workqueue buckets: 1 µs … 10 s, exponential by 10.
_QUEUE_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
# controller-runtime's reconcile-time buckets.
_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7,
                      0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20,
                      25, 30, 40, 50, 60)

RECONCILE_TOTAL = Counter("controller_runtime_reconcile_total",
                          "Total number of reconciliations per controller", ["controller", "result"])
RECONCILE_ERRORS = Counter("controller_runtime_reconcile_errors_total",
                           "Total number of reconciliation errors per controller", ["controller"])
TERMINAL_RECONCILE_ERRORS = Counter("controller_runtime_terminal_reconcile_errors_total",
                                    "Total number of terminal reconciliation errors per controller", ["controller"])
RECONCILE_TIME = Histogram("controller_runtime_reconcile_time_seconds",
                           "Length of time per reconciliation per controller", ["controller"],
                           buckets=_RECONCILE_BUCKETS)
ACTIVE_WORKERS = Gauge("controller_runtime_active_workers",
                       "Number of currently used workers per controller", ["controller"],
                       multiprocess_mode="livesum")

QUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], multiprocess_mode="livemax")
QUEUE_ADDS = Counter("workqueue_adds_total", "Total number of adds handled by workqueue", ["name"])
QUEUE_DURATION = Histogram("workqueue_queue_duration_seconds",
                           "How long in seconds an item stays in workqueue before being requested",
                           ["name"], buckets=_QUEUE_BUCKETS)
QUEUE_WORK_DURATION = Histogram("workqueue_work_duration_seconds",
                                "How long in seconds processing an item from workqueue takes",
                                ["name"], buckets=_QUEUE_BUCKETS)
QUEUE_UNFINISHED_WORK = Gauge("workqueue_unfinished_work_seconds",
                              "How many seconds of work has been done that is in progress and hasn't been "
                              "observed by work_duration", ["name"], multiprocess_mode="livesum")
QUEUE_LONGEST_RUNNING = Gauge("workqueue_longest_running_processor_seconds",
                              "How many seconds has the longest running processor for workqueue been running",
                              ["name"], multiprocess_mode="livemax")
QUEUE_RETRIES = Counter("workqueue_retries_total", "Total number of retries handled by workqueue", ["name"])

LEADER_STATUS = Gauge("leader_election_master_status",
                      "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
                      "1 indicates master", ["name"], multiprocess_mode="livemax")

SHARD_ASSIGNMENTS = Counter("shard_operator_shard_assignments_total",
                            "Ring changes published by the assigner (each bumps the epoch)", ["controller"])
SHARD_MOVEMENTS = Counter("shard_operator_shard_movements_total",
                          "Queued keys moved to another shard by a ring change", ["controller"])
LIVE_SHARDS = Gauge("shard_operator_live_shards", "Shards in the current ring", ["controller"],
                    multiprocess_mode="livemax")
CACHE_RELISTS = Counter("shard_operator_cache_relists_total",
                        "Times the leader found Redis had lost the shared cache and relisted every resource",
                        ["controller"])
CLAIM_EXPIRIES = Counter("shard_operator_claim_expiries_total",
                         "Claims that expired because their worker stopped renewing them; the key was queued again",
                         ["controller"])

API_REQUESTS = Counter("shard_operator_api_requests_total",
                       "API requests made by reconcilers through the client, by verb and resource",
                       ["controller", "verb", "resource"])


# Background jobs (shard_operator.jobs). ``outcome`` of a finished attempt is one of JOB_OUTCOMES.
JOB_OUTCOMES = ("succeeded", "failed", "timed_out", "retried", "abandoned", "refused", "canceled")

_JOB_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                         3600.0)

JOBS_ENQUEUED = Counter("shard_operator_jobs_enqueued_total",
                        "Background jobs enqueued (a repeated enqueue of the same job is not counted)",
                        ["controller", "task"])
JOBS_STARTED = Counter("shard_operator_jobs_started_total", "Background job attempts started by a job worker",
                       ["controller", "task"])
JOBS_COMPLETED = Counter("shard_operator_jobs_completed_total",
                         "Background job attempts that ended, by outcome: succeeded, failed, timed_out, retried "
                         "(failed with retries left), abandoned (its worker died), refused, canceled (superseded)",
                         ["controller", "task", "outcome"])
JOB_DURATION = Histogram("shard_operator_job_duration_seconds", "Run time of background job attempts",
                         ["controller", "task"], buckets=_JOB_DURATION_BUCKETS)
JOB_QUEUE_DEPTH = Gauge("shard_operator_job_queue_depth", "Jobs waiting in an rq queue", ["queue"],
                        multiprocess_mode="livemax")
REDIS_UP = Gauge("shard_operator_redis_up", "1 when this pod's last readiness check reached Redis, else 0",
                 ["controller"], multiprocess_mode="livemax")


#: pid → process label of the children this process supervises (see :func:`track_process`).
_tracked: dict[int, str] = {}


def track_process(pid: int, name: str) -> None:
    """Export ``process_*`` metrics of child ``pid`` under ``process=name`` until it is marked dead."""
    _tracked[pid] = name


class ProcessTreeCollector(Collector):
    """``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_virtual_memory_bytes``,
    ``process_open_fds`` and ``process_start_time_seconds`` of this process (``process="manager"``) and of
    every tracked child, read from ``/proc`` when scraped. A process that vanished meanwhile is skipped."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "cpu": CounterMetricFamily("process_cpu_seconds_total", "Total user and system CPU time spent in "
                                       "seconds", labels=["process"]),
            "rss": GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes",
                                     labels=["process"]),
            "vms": GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes",
                                     labels=["process"]),
            "fds": GaugeMetricFamily("process_open_fds", "Number of open file descriptors", labels=["process"]),
            "start": GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix "
                                       "epoch in seconds", labels=["process"]),
        }
        boot = self._boot_time()
        for pid, name in [(os.getpid(), "manager"), *sorted(_tracked.items())]:
            try:
                fields = (self.proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
                fds = len(os.listdir(self.proc / str(pid) / "fd"))
            except (OSError, IndexError):  # exited between the listing and the read
                continue
            # Fields after "(comm)": state is #3 in proc(5), so field #n is at index n - 3.
            families["cpu"].add_metric([name], (int(fields[11]) + int(fields[12])) / self._ticks)
            families["rss"].add_metric([name], int(fields[21]) * self._page)
            families["vms"].add_metric([name], int(fields[20]))
            families["fds"].add_metric([name], fds)
            families["start"].add_metric([name], boot + int(fields[19]) / self._ticks)
        yield from families.values()

    def _boot_time(self) -> float:
        try:
            for line in (self.proc / "stat").read_text().splitlines():
                if line.startswith("btime "):
                    return float(line.split()[1])
        except OSError:
            pass
        return 0.0


def enable_multiprocess(folder: Path) -> None:
    """Point prometheus-client at ``folder`` for this process and every child started after this call.

    Every metric here has labels, and prometheus-client creates a labelled child's value store when
    ``labels()`` is first called, from ``values.ValueClass``: resetting that class here makes the switch
    take effect even when prometheus-client was imported earlier. Stale files of earlier runs are removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    _values.ValueClass = _values.get_value_class()


def mark_process_dead(pid: int) -> None:
    """Drop a dead child's live gauges (its counters and histograms stay in the totals) and its
    ``process_*`` series."""
    _tracked.pop(pid, None)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.mark_process_dead(pid)


def render() -> bytes:
    """The text exposition of every process's metrics (or of this process's, without multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        registry.register(ProcessTreeCollector())
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
