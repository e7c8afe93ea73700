"""Sharded ingest end to end (``--sharded-ingest``): every manager lists and watches the uid-hash ranges of
Widgets the leader assigns it (server-side sharded list and watch, Kubernetes >= 1.36), and every Widget's
last change is reconciled while pods join and leave and the ranges move between them (I2 under range
moves). On a server without sharded list and watch, the option is refused at start."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from examples.widgets import WIDGETS, widget
from shard_operator.client import Client
from shard_operator.ingest import IngestRegistry
from shard_operator.keys import Keys
from shard_operator.testing import ControlPlane
from tests.e2e.observed import unobserved

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]

N = 60


def plan_of(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    try:
        return IngestRegistry(client, Keys.for_controller("widgets")).plan()
    finally:
        client.close()


def settled_among(redis_url: str, members: set[str]) -> bool:
    plan = plan_of(redis_url)
    return plan is not None and plan.settled and set(plan.watch) == members


def test_sharded_ingest_is_refused_on_a_server_without_sharded_list_and_watch(control_plane: ControlPlane,
                                                                           start_manager) -> None:
    if control_plane.sharded_list_and_watch:
        pytest.skip(f"Kubernetes {control_plane.kubernetes_version} honours shard selectors")
    manager = start_manager("pod-0", SHARDED_INGEST="1")
    assert manager.wait(30) == 2
    assert "--sharded-ingest" in manager.stderr and "ShardedListAndWatch" in manager.stderr


def test_every_widget_s_last_change_is_reconciled_while_ranges_move_between_pods(
        control_plane: ControlPlane, kube: Client, namespace, redis_url, start_manager) -> None:
    if not control_plane.sharded_list_and_watch:
        pytest.skip(f"Kubernetes {control_plane.kubernetes_version} has no sharded list and watch "
                    "(run with --kubernetes-version 1.37)")
    a = start_manager("pod-a", SHARDED_INGEST="1")
    a.wait_ready(60)
    a.wait_for(lambda: settled_among(redis_url, {"pod-a"}), 30, "pod-a to own the whole hash space")
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: kube.create(WIDGETS, widget(f"w-{i:03d}", namespace, size=i)), range(N)))
    a.wait_for(lambda: not unobserved(redis_url, namespace, N), 90, f"{N} widgets to be observed")

    def change_all(size: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda obj: kube.patch(WIDGETS, obj, {"spec": {"size": size}}), created))

    # pod-b joins while every Widget changes: half of the space moves to it.
    b = start_manager("pod-b", SHARDED_INGEST="1")
    change_all(1000)
    b.wait_for(lambda: settled_among(redis_url, {"pod-a", "pod-b"}), 60, "the plan to settle on two pods")
    change_all(2000)
    a.wait_for(lambda: not unobserved(redis_url, namespace, N), 90, "every change to be observed on two pods")
    plan = plan_of(redis_url)
    assert plan is not None and len(plan.watch["pod-a"]) == 1 and len(plan.watch["pod-b"]) == 1

    # pod-c joins and the leader (pod-a, the first) leaves while every Widget changes again.
    c = start_manager("pod-c", SHARDED_INGEST="1")
    change_all(3000)
    assert a.stop() == 0
    change_all(4000)
    c.wait_for(lambda: settled_among(redis_url, {"pod-b", "pod-c"}), 60, "the plan to settle without pod-a")
    c.wait_for(lambda: not unobserved(redis_url, namespace, N), 90, "every last change to be observed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the cache the test reads is the operator's: check the API too
        current = [kube.get(WIDGETS, obj["metadata"]["name"], namespace) for obj in created]
        behind = [obj["metadata"]["name"] for obj in current
                  if (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]]
        if not behind:
            break
        time.sleep(0.5)
    assert not behind, f"not reconciled after their last change: {behind}"
