"""The ingest's shared state in Redis: members beat and drop out, the leader publishes the next plan, and a
hand-over completes once the new owner has reported (fakeredis and redis-server, a manual clock)."""

from __future__ import annotations

from shard_operator.ingest import IngestRegistry, Plan
from shard_operator.source import FULL_RANGE, HashRange

LOWER, UPPER = HashRange.split(2)


class StubMember:
    """An ingest member that has listed whatever it was given (the real one is tested on 1.37)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.applied: list[Plan] = []
        self.synced_epoch: int | None = None

    def apply(self, plan: Plan) -> None:
        self.applied.append(plan)
        self.synced_epoch = plan.epoch


def test_a_member_that_stops_beating_drops_out_with_its_report(client, keys, clock):
    registry = IngestRegistry(client, keys, member_ttl=10.0, clock=clock)
    registry.heartbeat("pod-a")
    registry.heartbeat("pod-b")
    registry.report("pod-a", 3)
    assert registry.live_members() == ["pod-a", "pod-b"]
    clock.step(11.0)
    registry.heartbeat("pod-b")
    assert registry.live_members() == ["pod-b"]
    assert registry.synced() == {}
    client.set(keys.ingest_marker("pod-b"), "token")  # what its runner writes
    registry.leave("pod-b")
    assert registry.live_members() == []
    assert not client.exists(keys.ingest_marker("pod-b"))  # nothing of a member that left stays behind


def test_the_leader_hands_a_range_over_once_the_new_owner_reports(client, keys, clock):
    leader = IngestRegistry(client, keys, clock=clock)
    a, b = StubMember("pod-a"), StubMember("pod-b")
    assert leader.plan() is None
    leader.member_tick(a)  # joins; no plan yet
    first = leader.plan_tick()
    assert first.watch == {"pod-a": (FULL_RANGE,)} and leader.plan() == first
    leader.member_tick(a)
    leader.member_tick(b)
    moving = leader.plan_tick()
    assert moving.epoch == first.epoch + 1
    assert moving.watch == {"pod-a": (FULL_RANGE,), "pod-b": (UPPER,)}
    assert leader.plan_tick() == moving  # pod-b has not reported this epoch yet
    leader.member_tick(b)
    leader.member_tick(a)
    assert leader.synced() == {"pod-a": moving.epoch, "pod-b": moving.epoch}
    settled = leader.plan_tick()
    assert settled.watch == {"pod-a": (LOWER,), "pod-b": (UPPER,)} and settled.settled
    assert a.applied[-1] == moving and b.applied[-1] == moving
