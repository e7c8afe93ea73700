"""The invariant checker on hand-made records: it must find an overlap, a lost update and a shrinking
backoff, and call a clean run clean."""

from __future__ import annotations

from loadtest.checker import Final, check
from loadtest.recorder import Span


def span(key: str, start: float, end: float | None, *, pid: int = 1, outcome: str = "ok",
         generation: int | None = 1, wrote: bool | None = None) -> Span:
    return Span(f"{pid}-{start}", key, pid, f"shard-{pid}", None, start, end, generation, outcome, wrote)


def test_a_clean_run_is_clean() -> None:
    spans = [span("ns/a", 0.0, 0.1), span("ns/a", 0.2, 0.3, pid=2, generation=2), span("ns/b", 0.0, 0.5)]
    verdict = check(spans, {"ns/a": Final(2, 2), "ns/b": Final(1, 1)}, changes=3)
    assert verdict.clean
    assert verdict.overlaps == [] and verdict.lost == [] and verdict.backoff_violations == []
    assert verdict.collapse_ratio == 1.0
    assert "clean" in verdict.summary()


def test_two_reconciles_of_one_key_overlapping_in_time_are_an_overlap() -> None:
    spans = [span("ns/a", 0.0, 1.0, pid=1), span("ns/a", 0.5, 0.7, pid=2), span("ns/b", 0.5, 0.7, pid=2)]
    verdict = check(spans, {"ns/a": Final(1, 1), "ns/b": Final(1, 1)})
    assert not verdict.clean
    assert len(verdict.overlaps) == 1
    overlap = verdict.overlaps[0]
    assert overlap["key"] == "ns/a" and overlap["a"]["pid"] == 1 and overlap["b"]["pid"] == 2
    assert overlap["seconds"] == 0.2


def test_an_overlap_whose_stale_side_was_refused_is_fenced_not_a_violation() -> None:
    spans = [span("ns/a", 0.0, 1.0, pid=1, outcome="conflict"), span("ns/a", 0.5, 0.7, pid=2)]
    verdict = check(spans, {"ns/a": Final(1, 1)})
    assert verdict.clean
    assert len(verdict.fenced_overlaps) == 1


def test_an_overlap_whose_side_failed_before_sending_any_write_is_fenced() -> None:
    spans = [span("ns/a", 0.0, 1.0, pid=1, outcome="error", wrote=False), span("ns/a", 0.5, 0.7, pid=2)]
    verdict = check(spans, {"ns/a": Final(1, 1)})
    assert verdict.clean and len(verdict.fenced_overlaps) == 1
    assert verdict.fenced_overlaps[0]["a"]["wrote"] is False


def test_an_overlap_whose_side_failed_after_sending_its_write_is_a_violation() -> None:
    # e.g. the status write landed, then the connection was reset before the answer came back
    spans = [span("ns/a", 0.0, 1.0, pid=1, outcome="error", wrote=True), span("ns/a", 0.5, 0.7, pid=2)]
    verdict = check(spans, {"ns/a": Final(1, 1)})
    assert not verdict.clean and len(verdict.overlaps) == 1 and verdict.fenced_overlaps == []


def test_an_overlap_whose_failed_side_did_not_say_whether_it_wrote_is_a_violation() -> None:
    spans = [span("ns/a", 0.0, 1.0, pid=1, outcome="error"), span("ns/a", 0.5, 0.7, pid=2, outcome="error")]
    verdict = check(spans, {"ns/a": Final(1, 1)})
    assert len(verdict.overlaps) == 1 and verdict.fenced_overlaps == []


def test_back_to_back_reconciles_touching_at_one_instant_do_not_overlap() -> None:
    verdict = check([span("ns/a", 0.0, 1.0), span("ns/a", 1.0, 2.0, pid=2)], {"ns/a": Final(1, 1)})
    assert verdict.overlaps == []


def test_a_reconcile_cut_short_by_a_kill_is_unfinished_and_overlaps_nothing() -> None:
    verdict = check([span("ns/a", 0.0, None), span("ns/a", 0.5, 0.6, pid=2)], {"ns/a": Final(1, 1)})
    assert verdict.unfinished == 1 and verdict.overlaps == []


def test_an_object_whose_status_lags_its_final_spec_is_a_lost_update() -> None:
    verdict = check([span("ns/a", 0.0, 0.1)], {"ns/a": Final(3, 2), "ns/b": Final(1, None), "ns/c": Final(1, 1)})
    assert not verdict.clean
    assert verdict.lost == [{"key": "ns/a", "generation": 3, "converged": 2},
                            {"key": "ns/b", "generation": 1, "converged": None}]


def test_objects_expected_to_fail_are_not_lost_updates() -> None:
    verdict = check([], {"ns/bad": Final(1, None)}, expected_failing=["ns/bad"])
    assert verdict.lost == [] and verdict.clean


def test_reconciles_per_change_below_one_shows_collapse() -> None:
    spans = [span("ns/a", 0.0, 0.1, generation=5), span("ns/a", 0.2, 0.3, outcome="noop", generation=5)]
    verdict = check(spans, {"ns/a": Final(5, 5)}, changes=5)
    assert verdict.reconciles == 2 and verdict.collapse_ratio == 0.4


def failures(key: str, gaps: list[float]) -> list[Span]:
    spans, t = [], 0.0
    for gap in [0.0, *gaps]:
        t += gap
        spans.append(span(key, t, t + 0.001, outcome="error", generation=1))
        t += 0.001
    return spans


def test_retries_whose_gaps_follow_the_exponential_backoff_are_good() -> None:
    verdict = check(failures("ns/bad", [0.005, 0.01, 0.02, 0.04, 0.08]), {}, expected_failing=["ns/bad"])
    assert verdict.failing_keys == 1 and verdict.retries == 5
    assert verdict.backoff_violations == [] and verdict.min_retry_gap_s == 0.005


def test_gaps_that_shrink_but_stay_above_the_backoff_are_good() -> None:
    # The global token bucket can delay one retry more than the next: that is no hot loop.
    verdict = check(failures("ns/bad", [0.3, 0.05, 1.0, 0.08]), {}, expected_failing=["ns/bad"])
    assert verdict.backoff_violations == []


def test_a_retry_sooner_than_its_backoff_is_a_violation() -> None:
    gaps = [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.01]
    verdict = check(failures("ns/bad", gaps), {}, expected_failing=["ns/bad"])
    assert not verdict.clean
    [violation] = verdict.backoff_violations
    assert violation["failures"] == 8 and violation["gap_s"] == 0.01 and violation["floor_s"] == 0.32


def test_a_success_starts_a_new_backoff_series() -> None:
    spans = failures("ns/a", [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32])
    last_end = spans[-1].end or 0.0
    spans.append(span("ns/a", last_end + 1.0, last_end + 1.001, outcome="ok"))
    spans += [span("ns/a", last_end + 2.0 + i * 0.011, last_end + 2.0 + i * 0.011 + 0.001, outcome="error")
              for i in range(2)]
    verdict = check(spans, {"ns/a": Final(1, 1)})
    assert verdict.backoff_violations == []


def test_a_fault_window_between_retries_starts_a_new_backoff_series() -> None:
    spans = failures("ns/bad", [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.01])
    window = ((spans[6].end or 0.0), (spans[7].start + 0.001))  # e.g. a new leader relisted every key
    verdict = check(spans, {}, expected_failing=["ns/bad"], resets=[window])
    assert verdict.backoff_violations == []
