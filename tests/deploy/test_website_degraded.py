"""The Website reconciler's Degraded branches, unit-tested with a FakeContext: a spec the typed model
rejects (``InvalidSpec``) and a render job that failed (``RenderFailed``) each become a ``Degraded``
condition with a message, publish nothing, and ask for no retry; a second reconcile writes nothing, so
neither is a hot loop."""

from __future__ import annotations

from typing import Any

from examples.website import CONFIGMAPS, DEPLOYMENTS, SERVICES, WEBSITES, reconcile
from shard_operator.client import find_condition
from shard_operator.testing import FakeContext

KEY = "sites/demo"


def context(**spec: Any) -> FakeContext:
    return FakeContext(WEBSITES.resource, KEY, controller="websites",
                       objects={WEBSITES.resource: [WEBSITES.object("demo", "sites", **spec)]})


def website(ctx: FakeContext) -> dict[str, Any]:
    found = ctx.object(WEBSITES.resource, KEY)
    assert found is not None
    return found


def assert_degraded_and_nothing_published(ctx: FakeContext, reason: str, requeued: int = 0) -> dict[str, Any]:
    """Degraded for ``reason``, not Ready, no owned object, and no key added beyond the first ``requeued``."""
    site = website(ctx)
    degraded = find_condition(site["status"], "Degraded")
    assert degraded is not None and degraded["status"] == "True" and degraded["reason"] == reason
    ready = find_condition(site["status"], "Ready")
    assert ready is not None and ready["status"] == "False"
    assert site["status"]["observedGeneration"] == site["metadata"]["generation"]
    assert not ctx.objects(CONFIGMAPS) and not ctx.objects(DEPLOYMENTS) and not ctx.objects(SERVICES)
    assert len(ctx.requeues) == requeued
    return degraded


def assert_a_second_reconcile_writes_nothing(ctx: FakeContext) -> None:
    writes = len(ctx.writes)
    assert reconcile(ctx.request, ctx) is None
    assert len(ctx.writes) == writes


def test_a_spec_the_model_rejects_is_degraded_as_invalid_naming_the_field_and_renders_nothing():
    ctx = context(pages=[{"path": "/", "title": "Home"}], replicas="two")

    assert reconcile(ctx.request, ctx) is None

    degraded = assert_degraded_and_nothing_published(ctx, "InvalidSpec")
    assert "replicas" in degraded["message"]
    assert not ctx.enqueued_jobs
    assert WEBSITES.finalizer in website(ctx)["metadata"]["finalizers"]
    assert_a_second_reconcile_writes_nothing(ctx)


def test_a_failed_render_job_is_degraded_with_its_error_and_not_retried():
    ctx = context(pages=[{"path": "/", "title": "Home"}])
    assert reconcile(ctx.request, ctx) is None
    (job,) = ctx.enqueued_jobs
    assert job.ref.task == "website.render"

    backstop = len(ctx.requeues)  # the job's own backstop, added when it was enqueued

    ctx.fail_job("render", "RuntimeError: the renderer ran out of memory")
    assert reconcile(ctx.request, ctx) is None

    degraded = assert_degraded_and_nothing_published(ctx, "RenderFailed", requeued=backstop)
    assert degraded["message"] == "rendering the pages failed: RuntimeError: the renderer ran out of memory"
    assert len(ctx.enqueued_jobs) == 1  # the same generation is not rendered again
    assert_a_second_reconcile_writes_nothing(ctx)
