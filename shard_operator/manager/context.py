"""What each worker process builds after the fork for its reconciles: the cache reader, the API client,
the event recorder, the background-jobs binding (docs/design.md §2.6: clients are created in the child,
never inherited).

:class:`WorkerContextFactory` is picklable (plain fields), so it travels in a
:class:`~shard_operator.worker.pool.WorkerSpec`; the child calls it with its own Redis client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shard_operator import metrics
from shard_operator.cache import CacheReader
from shard_operator.client import Client, EventRecorder, RequestCounter
from shard_operator.jobs import Jobs
from shard_operator.kube import load_api_client
from shard_operator.source import Resource

if TYPE_CHECKING:
    import redis

__all__ = ["MetricRequestCounter", "WorkerContextFactory"]


class MetricRequestCounter(RequestCounter):
    """A :class:`RequestCounter` that also counts into ``shard_operator_api_requests_total``, so the
    requests of every worker process show on the manager's ``/metrics``."""

    def __init__(self, controller: str) -> None:
        super().__init__()
        self.controller = controller

    def record(self, verb: str, resource: str) -> None:
        super().record(verb, resource)
        metrics.API_REQUESTS.labels(self.controller, verb, resource).inc()


@dataclass(frozen=True)
class WorkerContextFactory:
    """Builds the parts of each :class:`~shard_operator.context.Context` of one worker process: the keyword
    arguments of :class:`~shard_operator.worker.runner.ShardWorker` (``jobs`` is None without a job queue)."""

    controller: str
    resource: Resource
    kubeconfig: str | None
    instance: str
    job_queue: str | None = None
    job_timeout: float = 180.0

    def __call__(self, client: redis.Redis) -> dict[str, Any]:
        kube = Client(load_api_client(self.kubeconfig), counter=MetricRequestCounter(self.controller),
                      field_manager=self.controller)
        jobs = (Jobs(client, self.controller, queue=self.job_queue, default_timeout=self.job_timeout)
                if self.job_queue else None)
        return {"cache": CacheReader(client), "client": kube, "resource": self.resource, "jobs": jobs,
                "recorder": EventRecorder(kube, self.controller, instance=self.instance)}
