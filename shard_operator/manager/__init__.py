"""The manager: supervision of the leader candidate, the worker processes and the health endpoints.

- :mod:`.core`: :class:`Manager`, start-up checks, the supervision loop, ordered shutdown.
- :mod:`.leading`: what runs while this pod leads (informers → cache + queue; the coordinator).
- :mod:`.context`: what each worker process builds after the fork (cache reader, API client).
- :mod:`.health`: ``/healthz``, ``/readyz`` and ``/metrics``, on a fixed number of threads.
- :mod:`.status`: the state ``shard-operator status`` reports, read from the Lease and Redis, with the
  last error of each retrying key.
"""

from shard_operator.manager.context import MetricRequestCounter, WorkerContextFactory
from shard_operator.manager.core import Manager, connect_api, connect_redis
from shard_operator.manager.health import HealthServer
from shard_operator.manager.leading import Coordinator, LeaderRunner

__all__ = [
    "Coordinator",
    "HealthServer",
    "LeaderRunner",
    "Manager",
    "MetricRequestCounter",
    "WorkerContextFactory",
    "connect_api",
    "connect_redis",
]
