"""A manager's ingest runner against the real API server (Kubernetes >= 1.36) and Redis: it fills its part
of the shared cache and the queue from the leader's plan, and when Redis loses its data (a restart
without persistence, a flush) it relists, so the cache and the queue are whole again (I5)."""

from __future__ import annotations

import time

import pytest
import redis

from examples.widgets import WIDGETS, install_crd, operator, widget
from shard_operator.cache import CacheReader
from shard_operator.client import Client
from shard_operator.config import Config
from shard_operator.keys import Keys
from shard_operator.manager.ingesting import IngestRunner
from shard_operator.queue import RateLimitingQueue
from shard_operator.testing import ControlPlane

pytestmark = [pytest.mark.controlplane, pytest.mark.redis]

N = 12


def test_a_member_relists_its_ranges_when_redis_loses_its_data(control_plane: ControlPlane, namespace,
                                                               redis_url) -> None:
    if not control_plane.sharded_list_and_watch:
        pytest.skip(f"Kubernetes {control_plane.kubernetes_version} has no sharded list and watch "
                    "(run with --kubernetes-version 1.37)")
    client = redis.Redis.from_url(redis_url)
    with control_plane.api_client() as api:
        install_crd(api)
        kube = Client(api)
        for index in range(N):
            kube.create(WIDGETS, widget(f"w-{index}", namespace, size=index))
        config = Config(redis_url=redis_url, pod_name="pod-0", namespaces=[namespace], sharded_ingest=True)
        runner = IngestRunner(operator, config, api, client)
        queue = RateLimitingQueue(client, Keys.for_controller(operator.name), bucket=None)
        runner.check_supported()

        def whole() -> bool:
            # The member beats before the leader plans, so the plan after the loss names it at once, with
            # the same range: only the member's own marker can tell it to relist.
            runner.tick()
            runner.registry.plan_tick()  # the leader's coordinator
            return len(CacheReader(client).list(WIDGETS, namespace)) == N and queue.len() == N

        try:
            deadline = time.monotonic() + 30
            while not whole():
                assert time.monotonic() < deadline, "the member did not fill the cache and the queue"
                time.sleep(0.1)
            client.flushdb()  # Redis loses everything: the plan, the cache, the queue, the member's marker
            deadline = time.monotonic() + 30
            while not whole():
                assert time.monotonic() < deadline, "the member did not relist after Redis lost its data"
                time.sleep(0.1)
        finally:
            runner.stop()
            client.close()
