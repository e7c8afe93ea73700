"""The single outcome switch maps every way a reconcile can end to one queue action."""

from __future__ import annotations

import pytest

from shard_operator.errors import ConflictError, TemporaryError, TerminalError, TooManyRequestsError
from shard_operator.reconcile import Result
from shard_operator.worker.outcome import Action, decide


@pytest.mark.parametrize(("returned", "action", "result", "delay"), [
    (None, Action.FORGET, "success", 0.0),
    (Result(), Action.FORGET, "success", 0.0),
    (Result(requeue_after=2.5), Action.REQUEUE_AFTER, "requeue_after", 2.5),
    (Result(requeue=True), Action.RATE_LIMITED, "requeue", 0.0),
    (Result(requeue=True, requeue_after=1.0), Action.REQUEUE_AFTER, "requeue_after", 1.0),
])
def test_a_returned_result_decides_forget_requeue_after_or_rate_limited(returned, action, result, delay):
    decision = decide(returned=returned)
    assert (decision.action, decision.result, decision.delay, decision.error) == (action, result, delay, False)


def test_a_terminal_error_forgets_the_key_and_counts_an_error():
    decision = decide(raised=TerminalError("bad spec"))
    assert decision.action is Action.FORGET and decision.error and decision.terminal


def test_a_temporary_error_with_a_delay_retries_after_that_delay():
    decision = decide(raised=TemporaryError("wait", delay=3.0))
    assert (decision.action, decision.delay, decision.error) == (Action.RETRY_AFTER, 3.0, True)


def test_a_429_raised_out_of_a_reconcile_is_retried_after_its_retry_after():
    decision = decide(raised=TooManyRequestsError("slow down", retry_after=7.0))
    assert (decision.action, decision.result, decision.delay, decision.error) == (
        Action.RETRY_AFTER, "error", 7.0, True)


@pytest.mark.parametrize("error", [TemporaryError("no delay"), RuntimeError("boom"), KeyError("x"),
                                   TooManyRequestsError("no Retry-After"), ConflictError("stale")])
def test_any_other_failure_backs_off_through_the_rate_limiter(error):
    decision = decide(raised=error)
    assert (decision.action, decision.result, decision.error, decision.terminal) == (
        Action.RATE_LIMITED, "error", True, False)


def test_a_reconciler_returning_something_else_is_retried_with_backoff():
    assert decide(returned="done").action is Action.RATE_LIMITED  # type: ignore[arg-type]


def test_negative_delays_are_refused_where_they_are_made():
    with pytest.raises(ValueError):
        Result(requeue_after=-1)
    with pytest.raises(ValueError):
        TemporaryError("x", delay=-1)
