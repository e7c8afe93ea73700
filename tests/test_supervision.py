"""A dead child is restarted after a doubling backoff; a child that ran long enough restarts at once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shard_operator.supervision import RestartPolicy


@dataclass
class Slot:
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0


def test_quick_deaths_back_off_doubling_up_to_the_cap():
    policy, slot = RestartPolicy(backoff=1.0, max_backoff=5.0, stable_after=60.0), Slot()
    delays = []
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        slot.started_at = now - 0.5
        delays.append(policy.schedule(slot, now))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert slot.next_start == 5.0 + 5.0


def test_a_death_after_a_stable_run_restarts_at_once_and_resets_the_count():
    policy, slot = RestartPolicy(backoff=1.0, stable_after=10.0), Slot(restarts=4)
    assert policy.schedule(slot, now=100.0) == 0.0 and slot.restarts == 0
    slot.started_at = 100.0
    assert policy.schedule(slot, now=101.0) == 1.0


def test_a_backoff_above_the_cap_is_used_as_it_is_and_nonpositive_ones_are_refused():
    assert RestartPolicy(backoff=60.0, max_backoff=30.0).schedule(Slot(), now=1.0) == 60.0
    with pytest.raises(ValueError):
        RestartPolicy(backoff=0)
