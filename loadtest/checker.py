"""The invariant checker: what a run's reconcile records and final objects say about I1-I4.

Where it sits: after a run, ``loadtest.runner`` hands it the recorder's spans (``loadtest.recorder``),
the final state of every object and the changes the load generator made; the report and the SLO gates
read its verdict. It needs no cluster, so its own tests feed it hand-made records.

- **I1 overlaps**: two reconciles of one key whose recorded intervals overlap. The recorded interval
  lies inside the claim (start is recorded after the claim is taken, end before ``done``), so an overlap
  is real. One where either side had no effect is *fenced*: its write was refused (``conflict``), not
  sent because its claim was lost (``fenced``), or it failed (``error``) without ever sending a write
  (the recorder's ``wrote: false``). It is listed apart and is not a violation. An ``error`` side that
  sent its write, or did not record whether it did, may have changed the object (a write that landed
  before its connection was reset): that overlap is a violation.
- **I2 lost updates**: an object that exists at the end whose converged generation is not its final
  ``metadata.generation`` (keys expected to fail, such as invalid objects, are left out).
- **I3 collapse**: reconciles that saw an object (``ok``/``noop``) per change made; below 1 means
  changes to a waiting key were collapsed.
- **I4 retries**: after a key's n-th failure in a row (``error`` or ``conflict``), the next reconcile must
  start no sooner than half its exponential backoff, ``base * 2**(n-1)`` capped (client-go's 5 ms and
  1000 s by default): the recorded end comes before the requeue, so a shorter gap means the backoff
  was skipped (a hot loop). The global token bucket only lengthens gaps, so gaps need not grow
  monotonically. A gap that overlaps a window in ``resets`` (a fault: a new leader relists and re-adds
  every key; Redis lost the failure counts) starts a new series, as does any success.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from loadtest.recorder import Span

__all__ = ["Final", "Verdict", "check"]

FENCED_OUTCOMES = ("conflict", "fenced")  # and "error" with nothing written: see _no_effect
SEEN_OUTCOMES = ("ok", "noop")
FAILED_OUTCOMES = ("conflict", "error")
BACKOFF_SLACK = 0.5


@dataclass(frozen=True)
class Final:
    """An object that exists at the end of a run: its spec generation and the generation its status says
    was converged (None when the status says nothing)."""

    generation: int
    converged: int | None


@dataclass
class Verdict:
    """The checker's answer. ``clean`` is true when no invariant it could check was broken."""

    records: int = 0
    keys: int = 0
    unfinished: int = 0
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    fenced_overlaps: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    changes: int = 0
    reconciles: int = 0
    collapse_ratio: float | None = None
    failing_keys: int = 0
    retries: int = 0
    min_retry_gap_s: float | None = None
    backoff_violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.overlaps or self.lost or self.backoff_violations)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}

    def summary(self) -> str:
        collapse = "n/a" if self.collapse_ratio is None else f"{self.collapse_ratio:.2f}"
        return (f"I1 overlaps {len(self.overlaps)} (fenced {len(self.fenced_overlaps)}), "
                f"I2 lost {len(self.lost)}, I3 reconciles/change {collapse}, "
                f"I4 backoff violations {len(self.backoff_violations)} over {self.failing_keys} failing keys "
                f"-> {'clean' if self.clean else 'BROKEN'}")


def _brief(span: Span) -> dict[str, Any]:
    return {"pid": span.pid, "shard": span.shard, "claim": span.claim, "start": round(span.start, 4),
            "end": None if span.end is None else round(span.end, 4), "outcome": span.outcome, "wrote": span.wrote}


def _no_effect(span: Span) -> bool:
    """Whether this reconcile cannot have changed the object: refused, fenced, or failed before writing."""
    return span.outcome in FENCED_OUTCOMES or (span.outcome == "error" and span.wrote is False)


def _overlaps(spans: list[Span], verdict: Verdict) -> None:
    by_key: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        if span.end is not None:
            by_key[span.key].append(span)
    for key, mine in by_key.items():
        mine.sort(key=lambda s: s.start)
        for i, later in enumerate(mine):
            for earlier in mine[:i]:
                assert earlier.end is not None and later.end is not None
                if earlier.end > later.start:
                    found = {"key": key, "seconds": round(min(earlier.end, later.end) - later.start, 4),
                             "a": _brief(earlier), "b": _brief(later)}
                    fenced = _no_effect(earlier) or _no_effect(later)
                    (verdict.fenced_overlaps if fenced else verdict.overlaps).append(found)


def _lost(finals: Mapping[str, Final], expected_failing: set[str], verdict: Verdict) -> None:
    for key, final in sorted(finals.items()):
        if key not in expected_failing and final.converged != final.generation:
            verdict.lost.append({"key": key, "generation": final.generation, "converged": final.converged})


def _retries(spans: list[Span], resets: list[tuple[float, float]], verdict: Verdict, base: float,
             cap: float) -> None:
    by_key: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        if span.end is not None and span.outcome is not None:
            by_key[span.key].append(span)
    gaps_seen: list[float] = []
    for key, mine in by_key.items():
        mine.sort(key=lambda s: s.start)
        failures = 0
        if any(s.outcome == "error" for s in mine):
            verdict.failing_keys += 1
        for before, after in pairwise(mine):
            assert before.end is not None
            if before.outcome not in FAILED_OUTCOMES:
                failures = 0
                continue
            failures += 1
            gap = after.start - before.end
            if gap < 0:
                continue  # concurrent, not a retry: I1's business
            if any(start <= after.start and before.end <= end for start, end in resets):
                failures = 0  # a fault re-added the key or reset its failure count: a new series
                continue
            verdict.retries += 1
            gaps_seen.append(gap)
            floor = BACKOFF_SLACK * min(base * 2 ** (failures - 1), cap)
            if gap < floor:
                verdict.backoff_violations.append({"key": key, "failures": failures, "gap_s": round(gap, 4),
                                                   "floor_s": round(floor, 4), "at": round(after.start, 4)})
    verdict.min_retry_gap_s = round(min(gaps_seen), 4) if gaps_seen else None


def check(spans: Iterable[Span], finals: Mapping[str, Final], *, changes: int | None = None,
          expected_failing: Iterable[str] = (), resets: Iterable[tuple[float, float]] = (),
          backoff_base: float = 0.005, backoff_cap: float = 1000.0) -> Verdict:
    """Judge one run. ``finals`` holds every object that exists at the end (by ``namespace/name``);
    ``changes`` is how many creates and spec updates the load generator made (None: unknown)."""
    spans = list(spans)
    verdict = Verdict(records=len(spans), keys=len({s.key for s in spans} | set(finals)))
    verdict.unfinished = sum(1 for s in spans if s.end is None)
    _overlaps(spans, verdict)
    _lost(finals, set(expected_failing), verdict)
    verdict.reconciles = sum(1 for s in spans if s.outcome in SEEN_OUTCOMES)
    if changes:
        verdict.changes = changes
        verdict.collapse_ratio = round(verdict.reconciles / changes, 3)
    _retries(spans, sorted(resets), verdict, backoff_base, backoff_cap)
    return verdict
