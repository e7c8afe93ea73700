"""Job metrics, multiprocess-safe like :mod:`shard_operator.metrics` (every metric labelled).

Kept here until the lead moves them into :mod:`shard_operator.metrics`. ``outcome`` of a finished
attempt is one of :data:`OUTCOMES`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["JOBS_COMPLETED", "JOBS_ENQUEUED", "JOBS_STARTED", "JOB_DURATION", "JOB_QUEUE_DEPTH", "OUTCOMES"]

OUTCOMES = ("succeeded", "failed", "timed_out", "retried", "abandoned", "refused", "canceled")

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

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
                         ["controller", "task"], buckets=_DURATION_BUCKETS)
JOB_QUEUE_DEPTH = Gauge("shard_operator_job_queue_depth", "Jobs waiting in an rq queue", ["queue"],
                        multiprocess_mode="livemax")
