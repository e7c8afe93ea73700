"""JSON, never pickle, for everything a job writes to Redis: arguments, meta and results.

rq reads job data with the queue's serializer; with :class:`JSONSerializer` a worker never unpickles
bytes it found in Redis. :func:`check_json` gives the clear error at enqueue time that rq would only
give (obscurely) inside a worker.
"""

from __future__ import annotations

import json
from typing import Any

from shard_operator.errors import JobSerializationError

__all__ = ["JSONSerializer", "check_json"]


class JSONSerializer:
    """rq's serializer protocol (``dumps``/``loads``) with strict JSON: no NaN, no pickle fallback."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return json.loads(data)


def check_json(value: Any, what: str) -> None:
    """Raise :class:`JobSerializationError` naming the first part of ``value`` JSON cannot hold as is.

    Tuples are accepted (they come back as lists); dict keys must be strings.
    """
    path = _first_invalid(value, what)
    if path is not None:
        raise JobSerializationError(path)


def _first_invalid(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if value == value and value not in (float("inf"), float("-inf")) else (
            f"{where} is {value!r}, which JSON cannot hold")
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_invalid(item, f"{where}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}; JSON object keys must be strings"
            found = _first_invalid(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    return f"{where} is a {type(value).__name__} ({value!r:.80}), which is not JSON; pass str, int, float, bool, " \
           "None, lists or dicts of them"
