"""Which ingest member lists and watches which range of the primary resource's uid hash.

The leader computes a :class:`Plan` from the live members and what each reported, and publishes it;
every member makes its informers match its entry. A member's *target* is its share of an equal split
of the hash space among the live members, in name order (any leader computes the same split). A
range changes hands in two steps, so that no change goes unseen (I2):

1. the new owner is given the range in addition: both watch it, and the doubles are absorbed
   downstream (the cache keeps the newer resourceVersion, the queue holds a waiting key once, I3);
2. once the new owner reports that it has listed its whole target at the plan's epoch
   (``synced[member] >= plan.epoch``), the old owner is told to drop it.

A member that leaves (its membership expired) loses its ranges at once; the new owner's first list
returns every object of the range as it is then, so only what that member had not yet written is
replayed, never lost. Once every member has reported the current epoch, the plan is a partition: each
hash is watched by exactly one member.

Contract of :func:`next_plan` (tested with generated histories): at every step each member watches
its target; a hash that a live member watched and had listed stays watched by a member that had listed
it, until its target owner reports; the result depends only on the inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shard_operator.source.hashrange import HashRange

__all__ = ["Plan", "next_plan"]


@dataclass(frozen=True)
class Plan:
    """``epoch`` grows with every change of the targets; ``targets`` is each member's share of the split;
    ``watch`` the ranges each member must list and watch now (its target, plus ranges it hands over)."""

    epoch: int = 0
    targets: dict[str, HashRange] = field(default_factory=dict)
    watch: dict[str, tuple[HashRange, ...]] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Whether no hand-over is pending: every member watches exactly its target."""
        return all(self.watch.get(member) == (target,) for member, target in self.targets.items())

    def to_json(self) -> str:
        return json.dumps({"epoch": self.epoch,
                           "targets": {m: [r.start, r.end] for m, r in self.targets.items()},
                           "watch": {m: [[r.start, r.end] for r in ranges] for m, ranges in self.watch.items()}},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        raw = json.loads(text)
        return cls(int(raw["epoch"]),
                   {m: HashRange(*bounds) for m, bounds in raw["targets"].items()},
                   {m: tuple(HashRange(*bounds) for bounds in ranges) for m, ranges in raw["watch"].items()})


def next_plan(previous: Plan | None, members: Iterable[str], synced: Mapping[str, int]) -> Plan:
    """The plan that follows ``previous`` for the live ``members``, given the latest epoch each member
    reported as listed (``synced``; a member that reported nothing is absent)."""
    previous = previous or Plan()
    live = sorted(set(members))
    targets = dict(zip(live, HashRange.split(len(live)), strict=True)) if live else {}
    epoch = previous.epoch if targets == previous.targets else previous.epoch + 1
    # Hand-overs still pending: the targets of members that have not listed them at this epoch.
    pending = [(member, target) for member, target in targets.items() if synced.get(member, -1) < epoch]
    watch: dict[str, tuple[HashRange, ...]] = {}
    for member in live:
        kept = []
        for watched in previous.watch.get(member, ()):
            for other, target in pending:
                if other == member:
                    continue
                piece = watched.intersection(target)
                if piece is not None:
                    kept.append(piece)
        watch[member] = _merge([targets[member], *kept])
    return Plan(epoch, targets, watch)


def _merge(ranges: list[HashRange]) -> tuple[HashRange, ...]:
    """The same hashes as ``ranges``, as sorted, non-overlapping, non-adjacent ranges."""
    merged: list[HashRange] = []
    for current in sorted(ranges):
        if merged and current.start <= merged[-1].end:
            merged[-1] = HashRange(merged[-1].start, max(merged[-1].end, current.end))
        else:
            merged.append(current)
    return tuple(merged)
