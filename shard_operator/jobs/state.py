"""What a reconcile reads about a job: :class:`JobRef` (what ``enqueue_job`` returned) and :class:`JobState`.

Both are plain data, so a reconciler never handles an rq object: it reads ``ctx.job(name)`` and
writes the outcome to the object's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["JobRef", "JobState", "JobStatus"]


class JobStatus(StrEnum):
    """A job's lifecycle, with rq's status names."""

    QUEUED = "queued"            # waiting for a job worker (also after a retry)
    SCHEDULED = "scheduled"      # waiting for its time
    DEFERRED = "deferred"
    STARTED = "started"          # a job worker runs it
    FINISHED = "finished"        # succeeded; ``result`` holds the return value
    FAILED = "failed"            # raised, timed out, was refused or abandoned with no retries left
    STOPPED = "stopped"
    CANCELED = "canceled"        # superseded by a newer generation before it ran

    @classmethod
    def parse(cls, value: Any) -> JobStatus:
        text = getattr(value, "value", value)
        try:
            return cls(text)
        except ValueError:
            return cls.QUEUED  # rq's transient states (created, ready_to_enqueue, rate_limited) mean "waiting"


_PENDING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job of one object's generation; ``created`` is False when an existing job was returned."""

    id: str
    name: str
    task: str
    key: str
    generation: str
    queue: str
    created: bool


@dataclass(frozen=True, slots=True)
class JobState:
    """A job as a reconcile sees it. ``error`` is the last line of the failure, ``traceback`` all of it."""

    id: str
    name: str
    task: str
    key: str
    generation: str
    status: JobStatus
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    retries_left: int | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None

    @property
    def pending(self) -> bool:
        return self.status in _PENDING

    @property
    def running(self) -> bool:
        return self.status is JobStatus.STARTED

    @property
    def done(self) -> bool:
        return self.status in _DONE

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.FINISHED

    @property
    def failed(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.STOPPED)
