"""Waiting in tests: poll a check until it holds, instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["eventually"]


def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "the check to pass",
               interval: float = 0.02) -> Any:
    """Call ``check`` until it returns a truthy value (returned) without raising AssertionError; after
    ``timeout`` seconds fail with an AssertionError naming ``what`` (chained to the last one raised)."""
    deadline = time.monotonic() + timeout
    while True:
        last: AssertionError | None = None
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last
        time.sleep(interval)
