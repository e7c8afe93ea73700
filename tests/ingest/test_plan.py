"""The ingest plan: which member watches which hash range, and how a range changes hands (I2 under range
moves, for the plan; histories of members joining, leaving and reporting are generated)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shard_operator.ingest import Plan, next_plan
from shard_operator.source import HASH_SPACE, HashRange

NAMES = ["pod-0", "pod-1", "pod-2", "pod-3"]


def covering(ranges_by_member: dict[str, tuple[HashRange, ...]], point: int) -> set[str]:
    return {member for member, ranges in ranges_by_member.items() if any(r.start <= point < r.end for r in ranges)}


def segment_starts(*plans: dict[str, tuple[HashRange, ...]]) -> list[int]:
    """One point per elementary segment of all the ranges: enough to compare sets of ranges exactly."""
    bounds = {0}
    for plan in plans:
        for ranges in plan.values():
            for r in ranges:
                bounds.update((r.start, r.end))
    return sorted(b for b in bounds if b < HASH_SPACE)


def intersect(mine: tuple[HashRange, ...], watched: tuple[HashRange, ...]) -> tuple[HashRange, ...]:
    return tuple(piece for a in mine for b in watched if (piece := a.intersection(b)) is not None)


class Cluster:
    """The members' side: each watches what the plan says; what it has listed is what it watched when it
    last reported, less what the plan took away since."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.live: set[str] = set()
        self.synced: dict[str, int] = {}
        self.listed: dict[str, tuple[HashRange, ...]] = {}

    def replan(self) -> None:
        before = {m: self.listed.get(m, ()) for m in self.live}
        self.plan = next_plan(self.plan, self.live, self.synced)
        self.listed = {m: intersect(self.listed.get(m, ()), self.plan.watch[m]) for m in self.live}
        for point in segment_starts(before, self.listed):
            if covering(before, point):
                assert covering(self.listed, point), f"{point:#x} was listed by {covering(before, point)} and " \
                                                     f"is no longer watched by a member that listed it"

    def join(self, name: str) -> None:
        self.live.add(name)

    def leave(self, name: str) -> None:
        self.live.discard(name)
        self.synced.pop(name, None)
        self.listed.pop(name, None)

    def report(self, name: str) -> None:
        if name in self.live:
            self.listed[name] = self.plan.watch.get(name, ())
            self.synced[name] = self.plan.epoch


def test_members_split_the_space_in_name_order():
    plan = next_plan(None, ["pod-1", "pod-0"], {})
    assert plan.targets == dict(zip(["pod-0", "pod-1"], HashRange.split(2), strict=True))
    assert plan.watch == {m: (r,) for m, r in plan.targets.items()} and plan.settled


def test_a_range_is_handed_over_only_after_the_new_owner_has_listed_it():
    first = next_plan(None, ["pod-0"], {"pod-0": 0})
    joined = next_plan(first, ["pod-0", "pod-1"], {"pod-0": 0})
    upper = HashRange.split(2)[1]
    assert joined.epoch == first.epoch + 1
    assert joined.watch["pod-1"] == (upper,) and joined.watch["pod-0"] == (HashRange(0, HASH_SPACE),)
    assert not joined.settled
    listed = next_plan(joined, ["pod-0", "pod-1"], {"pod-0": 0, "pod-1": joined.epoch})
    assert listed.epoch == joined.epoch and listed.settled
    assert listed.watch["pod-0"] == (HashRange.split(2)[0],)


def test_a_member_that_leaves_loses_its_ranges_at_once():
    both = next_plan(None, ["pod-0", "pod-1"], {"pod-0": 0, "pod-1": 0})
    alone = next_plan(both, ["pod-0"], {"pod-0": 0})
    assert set(alone.watch) == {"pod-0"} and alone.watch["pod-0"] == (HashRange(0, HASH_SPACE),)


def test_a_plan_survives_publication():
    plan = next_plan(next_plan(None, ["pod-0"], {"pod-0": 0}), ["pod-0", "pod-1", "pod-2"], {"pod-0": 0})
    assert Plan.from_json(plan.to_json()) == plan


actions = st.lists(st.tuples(st.sampled_from(["join", "leave", "report", "report"]), st.sampled_from(NAMES)),
                   max_size=40)


@settings(max_examples=300, deadline=None)
@given(actions)
def test_no_listed_hash_goes_unwatched_while_ranges_move_and_the_plan_settles_into_a_partition(history):
    cluster = Cluster()
    for action, name in history:
        getattr(cluster, action)(name)
        cluster.replan()
        plan = cluster.plan
        assert set(plan.watch) == cluster.live
        assert all(plan.targets[m] in plan.watch[m] or any(r.start <= plan.targets[m].start and
                                                           plan.targets[m].end <= r.end for r in plan.watch[m])
                   for m in cluster.live)
    for name in sorted(cluster.live):  # everyone reports: the hand-overs complete
        cluster.report(name)
    cluster.replan()
    plan = cluster.plan
    assert plan.settled
    for point in segment_starts(plan.watch):
        assert len(covering(plan.watch, point)) == (1 if cluster.live else 0)
