"""Background jobs end to end: a reconcile enqueues a slow job through ``ctx.enqueue_job``, the manager's
job worker runs it, and the job's end brings the key back so the next reconcile writes the result."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from examples.widgets import WIDGETS, widget
from shard_operator.client import Client
from tests.e2e.observed import ROOT

#: ``TIME LEVEL ROLE[SHARD] LOGGER: ...`` (shard_operator.logs.TextFormatter)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ [A-Z]+ (?P<role>[a-z-]+)(\[[^\]]*\])? ")

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]


def areas(kube: Client, namespace: str, names: list[str]) -> dict[str, object]:
    found = {}
    for name in names:
        status = kube.get(WIDGETS, name, namespace).get("status") or {}
        found[name] = status.get("area")
    return found


def test_a_slow_job_computes_the_status_and_a_new_generation_gets_a_new_job(
        control_plane, kube: Client, namespace, redis_url, start_manager) -> None:
    manager = start_manager("pod-0", app="examples.widgets:measuring", JOB_WORKERS="1")
    manager.wait_ready()
    names = [f"m-{i}" for i in range(4)]
    for i, name in enumerate(names):
        kube.create(WIDGETS, widget(name, namespace, size=i + 2, seconds=1.0))
    manager.wait_for(lambda: areas(kube, namespace, names) == {n: (i + 2) ** 2 for i, n in enumerate(names)}, 30,
                     "every area to be computed by a background job")

    obj = kube.get(WIDGETS, "m-0", namespace)
    kube.patch(WIDGETS, obj, {"spec": {"size": 10, "seconds": 0.2}})
    manager.wait_for(lambda: areas(kube, namespace, ["m-0"]) == {"m-0": 100}, 30, "the new generation's job")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run([sys.executable, "-m", "shard_operator.cli", "status", "--controller",
                            "widgets-measuring", "--redis-url", redis_url, "--kubeconfig",
                            str(control_plane.kubeconfig), "--lease-namespace", namespace, "--json"],
                           capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["leader"] == "pod-0"
    assert all(not found["running"] and not found["failed"] for found in status["jobs"].values())

    # Every line of every process names the controller: the manager's threads (election, informers,
    # coordinator), the reconcile workers (silent at INFO when all goes well) and the job worker.
    lines = [line for line in manager.stderr.splitlines() if LOG_LINE.match(line)]
    assert {"manager", "job-worker"} <= {LOG_LINE.match(line)["role"] for line in lines}, lines
    assert [line for line in lines if " controller=widgets-measuring" not in line] == []
