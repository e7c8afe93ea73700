"""Invalid leader-election settings are refused up front with ConfigError."""

from __future__ import annotations

from typing import Any

import pytest

from shard_operator.errors import ConfigError
from shard_operator.leaderelection import LeaderElector

VALID: dict[str, Any] = {"namespace": "ns", "name": "lease", "identity": "a",
                         "lease_duration": 15, "renew_deadline": 10, "retry_period": 2}


@pytest.mark.parametrize("override", [
    {"lease_duration": 10},  # not greater than the renew deadline
    {"lease_duration": 5},
    {"renew_deadline": 2.4},  # not greater than 1.2 * retry period
    {"retry_period": 0},
    {"renew_deadline": 0, "lease_duration": 1},
    {"lease_duration": 0},
    {"lease_duration": 15.5},  # a Lease holds whole seconds
    {"identity": ""},
    {"namespace": ""},
    {"name": ""},
], ids=str)
def test_invalid_settings_raise_config_error(override: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LeaderElector(object(), **{**VALID, **override})  # type: ignore[arg-type]


def test_client_go_defaults_are_accepted() -> None:
    elector = LeaderElector(_FakeApiClient(), namespace="ns", name="lease", identity="a")  # type: ignore[arg-type]
    assert (elector.lease_duration, elector.renew_deadline, elector.retry_period) == (15, 10, 2)
    assert not elector.is_leader


def test_the_short_test_timings_are_accepted() -> None:
    LeaderElector(_FakeApiClient(), namespace="ns", name="lease", identity="a",  # type: ignore[arg-type]
                  lease_duration=2, renew_deadline=1.5, retry_period=0.2)


class _FakeApiClient:
    """Enough of an ApiClient to build a CoordinationV1Api that is never called."""
