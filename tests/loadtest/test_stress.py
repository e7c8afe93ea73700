"""The stress scenario's capacity: the last rate that kept the SLOs, or, when no step broke them, not
reached (a lower bound only). Driven with a stand-in run whose changes get slow above 20 changes/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from loadtest import scenarios
from loadtest.convergence import Change


class _Run:
    """Just what ``stress`` touches: each paced step makes one change, 0.1 s or 10 s slow by its rate."""

    def __init__(self) -> None:
        self.options = SimpleNamespace(objects=1, rate=10.0, duration=0.01)
        self.convergence = SimpleNamespace(changes=[])
        self.sampler = SimpleNamespace(scrape=dict)
        self.driver = SimpleNamespace(paced=self.paced, random_update=None)

    def paced(self, rate: float, duration: float, op: Callable[[], Any]) -> int:
        now = time.time()
        slow = 10.0 if rate > 20 else 0.1
        self.convergence.changes.append(Change("ns/a", 1, now, "update", converged_at=now + slow))
        time.sleep(duration)
        return max(1, round(rate * duration))

    def set_phase(self, name: str) -> None:
        pass

    def wait_converged(self, timeout: float | None = None) -> float:
        return 0.0


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios, "_create_initial", lambda run: 0.0)
    monkeypatch.setattr(scenarios, "_finish", lambda run, figures: figures)


def test_the_capacity_is_the_last_rate_before_a_step_broke_the_latency_slo() -> None:
    figures = scenarios.stress(_Run(), max_steps=5)  # type: ignore[arg-type]
    assert [s["rate"] for s in figures["steps"]] == [10.0, 15.0, 22.5]
    assert figures["steps"][-1]["breaks_slo"] is True
    assert figures["capacity_reached"] is True
    assert figures["capacity_changes_per_s"] == figures["steps"][1]["achieved_changes_per_s"]
    assert "capacity_at_least_changes_per_s" not in figures


def test_when_no_step_broke_an_slo_the_capacity_is_not_reached_and_only_a_lower_bound() -> None:
    figures = scenarios.stress(_Run(), max_steps=2)  # type: ignore[arg-type]
    assert not any(s.get("breaks_slo") for s in figures["steps"])
    assert figures["capacity_reached"] is False and figures["capacity_changes_per_s"] is None
    assert figures["capacity_at_least_changes_per_s"] == figures["steps"][-1]["achieved_changes_per_s"]
