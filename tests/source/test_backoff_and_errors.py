"""Backoff delays and the translation of API answers into shard-operator's errors."""

from __future__ import annotations

import pytest

from shard_operator.errors import ApiError, ConflictError, GoneError, NotFoundError, TooManyRequestsError
from shard_operator.kube import api_error_from_response, status_error
from shard_operator.source import Backoff


def test_backoff_doubles_up_to_the_maximum_and_resets_after_success():
    backoff = Backoff(initial=1, maximum=5, jitter=0, rand=lambda: 0.5)
    assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next() == 1


def test_backoff_jitter_stretches_each_delay_by_up_to_the_jitter_factor():
    assert Backoff(initial=2, jitter=1.0, rand=lambda: 0.0).next() == 2
    assert Backoff(initial=2, jitter=1.0, rand=lambda: 0.99).next() == pytest.approx(3.98)


def test_an_invalid_backoff_is_refused():
    with pytest.raises(ValueError):
        Backoff(initial=0)


@pytest.mark.parametrize(("code", "error"), [(404, NotFoundError), (409, ConflictError), (410, GoneError),
                                             (500, ApiError), (403, ApiError)])
def test_a_status_maps_to_the_error_of_its_code(code, error):
    translated = status_error({"kind": "Status", "code": code, "reason": "X", "message": "m"})
    assert type(translated) is error
    assert translated.status == code


def test_a_watch_error_event_with_reason_expired_is_gone():
    assert isinstance(status_error({"reason": "Expired", "message": "too old"}), GoneError)


def test_a_429_response_carries_its_retry_after_header():
    error = api_error_from_response(429, b'{"kind":"Status","code":429,"message":"slow down"}',
                                    {"Retry-After": "3"})
    assert isinstance(error, TooManyRequestsError)
    assert error.retry_after == 3.0
    assert str(error) == "slow down"


def test_a_non_json_error_body_becomes_the_message():
    error = api_error_from_response(502, b"bad gateway", {})
    assert type(error) is ApiError and "bad gateway" in str(error)


def test_jitter_never_takes_a_delay_past_the_maximum():
    backoff = Backoff(initial=8, maximum=30, jitter=1.0, rand=lambda: 0.99)
    delays = [backoff.next() for _ in range(6)]
    assert max(delays) == 30 and delays[0] == pytest.approx(15.92)
