"""The hot-path JSON codec: orjson's speed, the standard library's answers."""

from __future__ import annotations

import json

import pytest

from shard_operator import codec


def test_an_object_round_trips_as_compact_json_like_the_standard_library_writes_it() -> None:
    obj = {"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"replicas": 3, "ratio": 0.5, "on": True,
                                                                        "none": None, "text": "ünïcode ✓"}}
    assert codec.dumps(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    assert codec.loads(codec.dumps(obj)) == obj
    assert codec.loads(codec.dumps_text(obj)) == obj
    assert codec.loads(memoryview(codec.dumps(obj))) == obj


def test_what_orjson_refuses_is_still_encoded_and_decoded_by_the_standard_library() -> None:
    huge = 2**70  # beyond 64 bits: orjson refuses it both ways
    assert codec.loads(codec.dumps({"n": huge})) == {"n": huge}
    assert codec.loads(b'{"n": 1180591620717411303424}') == {"n": 2**70}
    assert codec.loads(codec.dumps({1: "int key"})) == {"1": "int key"}


def test_malformed_json_raises_the_standard_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        codec.loads(b'{"truncated": ')
