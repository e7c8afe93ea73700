"""Faults and edge cases end to end: the API server restarts mid-run, deletion with a finalizer, and
``shard-operator status`` on a live deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from examples.widgets import FINALIZER, WIDGETS, widget
from shard_operator.client import Client
from shard_operator.errors import NotFoundError
from shard_operator.testing import ControlPlane
from tests.e2e.observed import ROOT, unobserved

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]


def create(kube: Client, namespace: str, names: range) -> list[dict]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: kube.create(WIDGETS, widget(f"w-{i:03d}", namespace, size=i)), names))


def test_api_server_stopped_and_restarted_mid_run_loses_nothing(
        control_plane: ControlPlane, kube: Client, namespace, redis_url, start_manager) -> None:
    manager = start_manager("pod-0")
    manager.wait_ready()
    created = create(kube, namespace, range(60))
    control_plane.stop_apiserver()  # while most reconciles are still queued or writing
    time.sleep(1.0)
    control_plane.start_apiserver()
    with ThreadPoolExecutor(8) as pool:  # changes made after the restart are seen too
        list(pool.map(lambda obj: kube.patch(WIDGETS, obj, {"spec": {"size": -1}}), created[:10]))
    create(kube, namespace, range(60, 80))
    manager.wait_for(lambda: not unobserved(redis_url, namespace, 80), 60, "every widget to be observed")
    manager.wait_for(lambda: manager.leading, 15, "the manager to lead again")


def test_deleting_a_widget_runs_its_cleanup_once_and_removes_the_finalizer(
        kube: Client, namespace, redis_url, start_manager) -> None:
    manager = start_manager("pod-0", app="examples.widgets:finalizing")
    manager.wait_ready()
    create(kube, namespace, range(5))
    manager.wait_for(lambda: not unobserved(redis_url, namespace, 5), 30, "the widgets to be observed")
    for i in range(5):
        obj = kube.get(WIDGETS, f"w-{i:03d}", namespace)
        assert FINALIZER in obj["metadata"]["finalizers"]
        kube.request("delete", WIDGETS, f"{WIDGETS.path(namespace)}/w-{i:03d}")

    def gone() -> bool:
        try:
            kube.get(WIDGETS, "w-000", namespace)
            return False
        except NotFoundError:
            return all(_missing(kube, namespace, f"w-{i:03d}") for i in range(5))

    manager.wait_for(gone, 30, "the widgets to be deleted")
    events = kube.request("list", WIDGETS, f"/api/v1/namespaces/{namespace}/events")["items"]
    cleaned = sorted(e["involvedObject"]["name"] for e in events if e["reason"] == "CleanedUp")
    assert cleaned == [f"w-{i:03d}" for i in range(5)]


def _missing(kube: Client, namespace: str, name: str) -> bool:
    try:
        kube.get(WIDGETS, name, namespace)
    except NotFoundError:
        return True
    return False


def test_status_reports_the_leader_live_shards_and_queue(control_plane, namespace, redis_url, start_manager) -> None:
    manager = start_manager("pod-0")
    manager.wait_ready()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHARD_OPERATOR_KUBECONFIG": str(control_plane.kubeconfig),
           "SHARD_OPERATOR_REDIS_URL": redis_url, "SHARD_OPERATOR_LEASE_NAMESPACE": namespace}
    result = subprocess.run([sys.executable, "-m", "shard_operator.cli", "status", "--app",
                             "examples.widgets:operator", "--json"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["leader"] == "pod-0"
    assert status["live_shards"] == ["pod-0-w0", "pod-0-w1"] == status["ring"]
    assert status["queue_depth"] == {"pod-0-w0": 0, "pod-0-w1": 0}
    assert status["in_flight"] == [] and status["retrying"] == {}
    text = subprocess.run([sys.executable, "-m", "shard_operator.cli", "status", "--controller", "widgets"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert text.returncode == 0 and "leader:      pod-0" in text.stdout


def test_redis_losing_its_data_ends_in_convergence_without_a_manual_step(
        kube: Client, namespace, redis_url, start_manager) -> None:
    manager = start_manager("pod-0")
    manager.wait_ready()
    create(kube, namespace, range(20))
    manager.wait_for(lambda: not unobserved(redis_url, namespace, 20), 30, "every widget to be observed")
    reconciles = manager.metric("controller_runtime_reconcile_total", controller="widgets", result="success")

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()  # the cache, the queue, the ring and the members are gone
    finally:
        client.close()
    # The leader notices, relists into the cache and adds every key; the workers rejoin the ring.
    manager.wait_for(lambda: not unobserved(redis_url, namespace, 20), 30, "the cache to be refilled")
    manager.wait_for(lambda: manager.metric("shard_operator_cache_relists_total", controller="widgets") >= 1, 15,
                     "the relist to be counted")
    manager.wait_for(lambda: manager.metric("controller_runtime_reconcile_total", controller="widgets",
                                            result="success") >= reconciles + 20,
                     30, "every widget to be reconciled again")
    # And the pipeline keeps working for changes made afterwards.
    obj = kube.get(WIDGETS, "w-003", namespace)
    kube.patch(WIDGETS, obj, {"spec": {"size": 99}})
    create(kube, namespace, range(20, 25))
    manager.wait_for(lambda: not unobserved(redis_url, namespace, 25), 30, "the later changes to be observed")
    manager.wait_ready()
