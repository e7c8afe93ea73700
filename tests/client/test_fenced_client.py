"""The claim check and the fenced client, with a fake monotonic clock: a write is refused once the claim's
deadline minus the margin has passed or the claim was taken over, and patches and deletes carry the
object's resourceVersion unless ``unconditional=True``."""

from __future__ import annotations

import pytest

from shard_operator.client import JSON_PATCH, FencedClient, conditional_patch
from shard_operator.context import Claim
from shard_operator.errors import ClaimLost, ClaimLostError, ConflictError
from shard_operator.source import Resource
from shard_operator.testing import FakeContext
from shard_operator.testing.fake_api import FakeClient, ObjectStore

WIDGETS = Resource("example.shard-operator.dev", "v1", "widgets")
CONFIGMAPS = Resource("", "v1", "configmaps")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def widget(name: str = "w1") -> dict:
    return {"apiVersion": "example.shard-operator.dev/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"size": 1}}


def fenced(clock: FakeMonotonic, ttl: float = 3.0) -> tuple[FencedClient, ObjectStore, Claim]:
    store = ObjectStore()
    claim = Claim("default/w1", ttl, clock=clock)
    return FencedClient(FakeClient(store), claim), store, claim


def test_a_claim_is_held_until_its_deadline_minus_the_margin():
    clock = FakeMonotonic()
    claim = Claim("default/w1", 3.0, clock=clock)  # margin: a tenth of the TTL
    clock.now += 2.69
    claim.check()
    assert claim.held()
    clock.now += 0.02
    assert not claim.held()
    with pytest.raises(ClaimLost):
        claim.check()
    assert isinstance(ClaimLost("x"), ClaimLostError)


def test_a_renew_moves_the_deadline_and_a_lost_claim_stays_lost():
    clock = FakeMonotonic()
    claim = Claim("default/w1", 3.0, margin=0.5, clock=clock)
    clock.now += 2.0
    claim.confirm(clock.now)  # a renew sent now succeeded
    clock.now += 2.4
    claim.check()
    claim.lose()  # the renewer heard from Redis that the key is another worker's
    with pytest.raises(ClaimLost):
        claim.check()
    claim.confirm(clock.now)
    assert not claim.held()


def test_a_paused_worker_sends_no_write_of_any_kind_after_its_claim_expired():
    clock = FakeMonotonic()
    client, store, _ = fenced(clock)
    obj = store.put(WIDGETS, widget())
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
    clock.now += 10.0  # SIGSTOP for 10 s, then SIGCONT: the monotonic clock jumped
    writes = [
        lambda: client.patch(WIDGETS, obj, {"metadata": {"labels": {"a": "b"}}}, unconditional=True),
        lambda: client.patch_status(WIDGETS, obj, {"observedGeneration": 1}),
        lambda: client.create(CONFIGMAPS, configmap),
        lambda: client.delete(WIDGETS, obj, unconditional=True),
        lambda: client.add_finalizer(WIDGETS, obj, "x/y"),
        lambda: client.request("delete", WIDGETS, "/anything"),
    ]
    for write in writes:
        with pytest.raises(ClaimLost):
            write()
    assert store.writes == [] and client.counter.total() == 0
    assert client.get(WIDGETS, "w1", "default")["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_a_patch_is_conditional_on_the_objects_resource_version_unless_asked_otherwise():
    clock = FakeMonotonic()
    client, store, _ = fenced(clock)
    stale = store.put(WIDGETS, widget())
    store.put(WIDGETS, {**stale, "spec": {"size": 2}})  # another writer changed it since it was read
    with pytest.raises(ConflictError):
        client.patch(WIDGETS, stale, {"metadata": {"annotations": {"seen": "1"}}})
    with pytest.raises(ConflictError):
        client.patch(WIDGETS, stale, [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}],
                     content_type=JSON_PATCH)
    with pytest.raises(ConflictError):
        client.delete(WIDGETS, stale)
    assert store.writes == []
    client.patch(WIDGETS, stale, {"metadata": {"annotations": {"seen": "1"}}}, unconditional=True)
    assert store.get(WIDGETS, "default/w1")["metadata"]["annotations"] == {"seen": "1"}


def test_conditional_patch_adds_the_resource_version_and_keeps_one_already_there():
    obj = {"metadata": {"name": "w1", "resourceVersion": "7"}}
    assert conditional_patch(obj, {"spec": {"a": 1}}) == {"spec": {"a": 1}, "metadata": {"resourceVersion": "7"}}
    assert conditional_patch(obj, {"metadata": {"labels": {"x": "y"}}}) == {
        "metadata": {"labels": {"x": "y"}, "resourceVersion": "7"}}
    assert conditional_patch(obj, {"metadata": {"resourceVersion": "9"}}) == {"metadata": {"resourceVersion": "9"}}
    assert conditional_patch(obj, [{"op": "remove", "path": "/spec/a"}]) == [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}, {"op": "remove", "path": "/spec/a"}]
    with pytest.raises(ValueError, match="resourceVersion"):
        conditional_patch({"metadata": {"name": "w1"}}, {"spec": {}})


def test_a_fake_context_whose_claim_is_lost_refuses_writes_events_and_jobs():
    ctx = FakeContext(WIDGETS, "default/w1", objects={WIDGETS: [widget()]})
    obj = ctx.get(ctx.request)
    assert obj is not None
    ctx.check_claim()
    ctx.lose_claim()
    with pytest.raises(ClaimLost):
        ctx.recorder.normal(obj, "Done", "done")
    with pytest.raises(ClaimLost):
        ctx.client.patch_status(WIDGETS, obj, {"observedGeneration": 1})
    with pytest.raises(ClaimLost):
        ctx.enqueue_job("anything")
    with pytest.raises(ClaimLost):
        ctx.check_claim()
    assert ctx.writes == [] and ctx.events == [] and ctx.enqueued_jobs == []
