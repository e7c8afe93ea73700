"""Fencing end to end (I1): a worker SIGSTOPped mid-reconcile loses its claim, another worker reconciles
the newer spec, and when the first one is resumed none of its writes lands, whether unconditional (an
Event, an annotation patch with ``unconditional=True``, a created ConfigMap) or conditional (the status);
the final status matches the latest spec.

The operator under test is defined here (``tests.faults.test_fencing:operator``): its reconcile of
generation 1 waits, after writing its pid to a file, until the test releases it, so the test knows which
worker process to stop and when.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from examples.widgets import KIND, WIDGETS, install_crd, widget
from shard_operator import Context, For, Operator, Request, Result
from shard_operator.client import Client, RequestCounter, generation, set_controller_reference
from shard_operator.client.events import EVENTS
from shard_operator.errors import ConflictError, NotFoundError
from shard_operator.source import Resource

CONFIGMAPS = Resource("", "v1", "configmaps")
ANNOTATION = "fencing.example/generation"
ROOT = Path(__file__).resolve().parents[2]
MARKS = "FENCING_TEST_DIR"


def reconcile(request: Request, ctx: Context) -> Result | None:
    obj = ctx.get(request)
    if obj is None:
        return None
    current = generation(obj)
    status = obj.get("status") or {}
    annotations = obj["metadata"].get("annotations") or {}
    if status.get("observedGeneration") == current and annotations.get(ANNOTATION) == str(current):
        return None
    marks = Path(os.environ[MARKS])
    if current == 1 and not (marks / "released").exists():
        (marks / "paused.tmp").write_text(str(os.getpid()))
        (marks / "paused.tmp").rename(marks / "paused.pid")  # the test stops this process now
        while not (marks / "released").exists():
            time.sleep(0.05)
    # Writes that no precondition protects: an Event, an unconditional patch, a create.
    ctx.recorder.normal(obj, "Reconciling", f"generation {current}")
    obj = ctx.client.patch(WIDGETS, obj, {"metadata": {"annotations": {ANNOTATION: str(current)}}},
                           unconditional=True)
    configmap: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"generation": str(current)},
                                 "metadata": {"name": f"{request.name}-g{current}", "namespace": request.namespace}}
    set_controller_reference(configmap, obj)
    with contextlib.suppress(ConflictError):  # created by an earlier try of this generation
        ctx.client.create(CONFIGMAPS, configmap)
    # The conditional write: the status, from the object the annotation patch returned.
    size = (obj.get("spec") or {}).get("size")
    ctx.client.patch_status(WIDGETS, obj, {"observedGeneration": current, "size": size})
    return None


operator = Operator(name="fencing", reconcile=reconcile, for_=For(WIDGETS, kind=KIND))


@pytest.mark.controlplane
@pytest.mark.redis
@pytest.mark.slow
def test_a_resumed_worker_that_lost_its_claim_writes_nothing_and_the_status_follows_the_latest_spec(
        control_plane, namespace, operator_runner, tmp_path, monkeypatch) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv(MARKS, str(marks))
    with control_plane.api_client() as api:
        install_crd(api)
        kube = Client(api, counter=RequestCounter(), field_manager="fencing-test")
        runner = operator_runner("tests.faults.test_fencing:operator", workers=2, cwd=ROOT,
                                 settings={"CLAIM_TTL": "3"})
        runner.wait_ready(60)
        created = kube.create(WIDGETS, widget("w1", namespace, size=1))
        pid_file = marks / "paused.pid"
        runner.wait_for(pid_file.exists, 60, "the first reconcile to pause")
        paused = int(pid_file.read_text())
        os.kill(paused, signal.SIGSTOP)
        try:
            kube.patch(WIDGETS, created, {"spec": {"size": 2}})  # generation 2, while the worker is stopped

            def status() -> dict:
                return kube.get(WIDGETS, "w1", namespace).get("status") or {}

            runner.wait_for(lambda: status().get("observedGeneration") == 2, 60,
                            "another worker to reconcile generation 2")
            (marks / "released").write_text("")
        finally:
            os.kill(paused, signal.SIGCONT)
        runner.wait_for(lambda: "was lost during its reconcile" in runner.output, 30,
                        "the resumed worker to find its claim lost")
        time.sleep(3.0)  # time for any stale write to land, and for the requeued key to be reconciled

        final = kube.get(WIDGETS, "w1", namespace)
        assert final["status"] == {"observedGeneration": 2, "size": 2}
        assert final["metadata"]["annotations"][ANNOTATION] == "2"
        with pytest.raises(NotFoundError):  # the stale create was never sent
            kube.get(CONFIGMAPS, "w1-g1", namespace)
        assert kube.get(CONFIGMAPS, "w1-g2", namespace)["data"] == {"generation": "2"}
        messages = [e["message"] for e in kube.request("list", EVENTS, EVENTS.path(namespace))["items"]
                    if e["involvedObject"]["name"] == "w1" and e["reason"] == "Reconciling"]
        assert "generation 1" not in messages and "generation 2" in messages
        assert runner.exit_code is None
