"""FakeContext runs a reconcile with neither Redis nor an API server: reads from objects in memory, writes
applied to them as the API server would (resourceVersion, generation, conflicts, finalizers, owners), and
events, requeues and jobs recorded. The example operators are tested through it here."""

from __future__ import annotations

import pytest

from examples.widgets import CONFIGMAPS, FINALIZER, WIDGETS, make_reconcile, reconcile_owned, reconcile_with_job, widget
from shard_operator import Context, NoJobQueueError, Request, Result
from shard_operator.client import set_controller_reference
from shard_operator.errors import ConflictError, NotFoundError, UnregisteredTaskError
from shard_operator.testing import FakeContext, RecordedEvent, Requeue

W1 = Request("default", "w1")


def fake(**spec) -> FakeContext:
    return FakeContext(WIDGETS, W1, objects={WIDGETS: [widget("w1", "default", **spec)]})


def test_a_fake_context_is_a_context_whose_get_reads_the_stored_object():
    ctx = fake(size=3)
    assert isinstance(ctx, Context)
    found = ctx.get(W1)
    assert found["spec"] == {"size": 3}
    assert found["metadata"]["uid"] and found["metadata"]["resourceVersion"] and found["metadata"]["generation"] == 1
    assert ctx.get(Request("default", "gone")) is None
    found["spec"]["size"] = 99  # a read is a copy, as the cache's JSON is
    assert ctx.get(W1)["spec"] == {"size": 3}


def test_the_example_reconcile_writes_the_status_once_and_then_has_nothing_to_do():
    ctx = fake(size=3)
    reconcile = make_reconcile(finalizer=False)
    before = ctx.get(W1)["metadata"]["resourceVersion"]
    assert ctx.run(reconcile) is None
    status = ctx.object(WIDGETS, "default/w1")["status"]
    assert status["observedGeneration"] == 1 and status["conditions"][0]["type"] == "Ready"
    assert ctx.object(WIDGETS, "default/w1")["metadata"]["resourceVersion"] != before
    assert [(w.verb, w.key, w.subresource) for w in ctx.writes] == [("patch", "default/w1", "status")]
    assert ctx.run(reconcile) is None
    assert len(ctx.writes) == 1  # level-based: the status already describes the spec


def test_a_write_based_on_a_stale_object_raises_a_conflict_and_writes_nothing():
    ctx = fake(size=3)
    stale = ctx.get(W1)
    ctx.client.patch(WIDGETS, stale, {"spec": {"size": 4}})
    with pytest.raises(ConflictError):
        ctx.client.patch_status(WIDGETS, stale, {"observedGeneration": 1})
    assert ctx.object(WIDGETS, "default/w1")["metadata"]["generation"] == 2  # the spec write bumped it
    assert "status" not in ctx.object(WIDGETS, "default/w1")


def test_an_injected_conflict_fails_the_next_write_only():
    ctx = fake(size=3)
    ctx.fail_next_write(WIDGETS, "default/w1")
    reconcile = make_reconcile(finalizer=False)
    with pytest.raises(ConflictError):
        ctx.run(reconcile)
    assert ctx.writes == []
    assert ctx.run(reconcile) is None
    assert ctx.object(WIDGETS, "default/w1")["status"]["observedGeneration"] == 1


def test_a_status_write_changes_only_the_status_and_a_spec_write_only_the_rest():
    ctx = fake(size=3)
    obj = ctx.client.patch_status(WIDGETS, ctx.get(W1), {"observedGeneration": 1})
    assert obj["metadata"]["generation"] == 1 and obj["status"] == {"observedGeneration": 1}
    obj = ctx.client.patch(WIDGETS, obj, {"spec": {"size": 5}, "status": {"observedGeneration": 7}})
    assert obj["spec"] == {"size": 5} and obj["status"] == {"observedGeneration": 1}
    assert obj["metadata"]["generation"] == 2


def test_the_finalizing_example_cleans_up_once_and_the_object_goes_when_its_finalizer_is_removed():
    ctx = fake(size=3)
    reconcile = make_reconcile(finalizer=True)
    ctx.run(reconcile)
    assert FINALIZER in ctx.object(WIDGETS, "default/w1")["metadata"]["finalizers"]
    ctx.client.delete(WIDGETS, ctx.get(W1))
    assert ctx.object(WIDGETS, "default/w1")["metadata"]["deletionTimestamp"]  # held by the finalizer
    ctx.run(reconcile)
    assert ctx.object(WIDGETS, "default/w1") is None
    assert ctx.events == [RecordedEvent("Normal", "CleanedUp", "cleaned up after default/w1", "default/w1")]


def test_the_owning_example_creates_its_configmap_reads_it_back_by_owner_and_deleting_the_owner_collects_it():
    ctx = fake(size=7)
    ctx.run(reconcile_owned)
    (configmap,) = ctx.cache.list_owned(CONFIGMAPS, ctx.get(W1)["metadata"]["uid"])
    assert configmap["data"] == {"size": "7"}
    assert configmap["metadata"]["ownerReferences"][0]["kind"] == "Widget"
    ctx.client.patch(CONFIGMAPS, configmap, {"data": {"size": "edited"}})
    ctx.run(reconcile_owned)
    assert ctx.object(CONFIGMAPS, "default/w1-data")["data"] == {"size": "7"}
    assert [w.verb for w in ctx.writes] == ["create", "patch", "patch"]
    ctx.client.delete(WIDGETS, ctx.get(W1))
    assert ctx.objects(CONFIGMAPS) == []


def test_creating_an_existing_object_conflicts_and_getting_a_missing_one_is_not_found():
    ctx = fake()
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
    set_controller_reference(configmap, ctx.get(W1))
    ctx.client.create(CONFIGMAPS, configmap)
    with pytest.raises(ConflictError):
        ctx.client.create(CONFIGMAPS, configmap)
    with pytest.raises(NotFoundError):
        ctx.client.get(CONFIGMAPS, "missing", "default")
    assert ctx.client.counter.total("create", CONFIGMAPS.name) == 2


def test_the_job_example_enqueues_once_per_generation_and_writes_the_jobs_result():
    ctx = fake(size=3, seconds=0.1)
    assert ctx.run(reconcile_with_job) is None
    (job,) = ctx.enqueued_jobs
    assert (job.ref.task, job.args, job.retry) == ("widgets.measure", (3, 0.1), 1)
    assert ctx.requeues == [Requeue("default/w1", 180.0 * 2 + 5.0)]  # the backstop
    ctx.run(reconcile_with_job)
    assert len(ctx.enqueued_jobs) == 1 and ctx.writes == []  # still running: nothing new
    ctx.finish_job("measure", {"area": 9})
    ctx.run(reconcile_with_job)
    assert ctx.object(WIDGETS, "default/w1")["status"] == {"observedGeneration": 1, "area": 9}


def test_jobs_of_an_operator_without_a_job_queue_raise_a_clear_error():
    ctx = FakeContext(WIDGETS, W1, objects={WIDGETS: [widget("w1", "default")]}, jobs=False)
    with pytest.raises(NoJobQueueError, match="no job queue"):
        ctx.enqueue_job("widgets.measure", 1, 0.1)
    with pytest.raises(NoJobQueueError):
        ctx.job("measure")


def test_an_unregistered_task_is_refused_as_the_real_job_queue_refuses_it():
    with pytest.raises(UnregisteredTaskError):
        fake().enqueue_job("no.such.task")


def test_requeue_adds_this_or_another_key_now_or_later():
    ctx = fake()

    def reconcile(request: Request, ctx: Context) -> Result | None:
        ctx.requeue(Request("default", "w2"))
        ctx.requeue(after=30)
        return None

    ctx.run(reconcile)
    assert ctx.requeues == [Requeue("default/w2"), Requeue("default/w1", 30)]


def test_run_reconciles_another_request_over_the_same_objects():
    ctx = FakeContext(WIDGETS, W1, objects={WIDGETS: [widget("w1", "default"), widget("w2", "default")]})
    ctx.run(make_reconcile(finalizer=False), Request("default", "w2"))
    assert "status" in ctx.object(WIDGETS, "default/w2") and "status" not in ctx.object(WIDGETS, "default/w1")
    assert ctx.request == W1
