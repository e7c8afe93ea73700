"""Issue 8, item 7 as a regression guard: no script of a relist, an ``add_many`` or a rebalance blocks
Redis for 20 ms, and their work is split into more script calls as the keys grow, not into longer ones.

Runs :func:`loadtest.slowlog.run` (a redis-server of its own, every command in its SLOWLOG) at two small
key counts; ``python -m loadtest.slowlog --keys 100000`` is the full benchmark. A SLOWLOG entry is wall
time inside Redis, so on a busy machine one command can be stretched by the scheduler: each size is run
up to three times and a phase passes on any run under the limit. A script that scaled with the keyspace
would exceed it on every run.
"""

from __future__ import annotations

from typing import Any

import pytest

from loadtest import slowlog

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LIMIT_MS = 20.0
SMALL, LARGE = 1_000, 4_000
PHASES = ("relist", "add_many", "rebalance")


def measured(keys: int) -> tuple[dict[str, float], dict[str, int]]:
    """Per phase, the lowest SLOWLOG maximum (ms) of up to three runs, and the script calls of the first."""
    best: dict[str, float] = {}
    calls: dict[str, int] = {}
    for _ in range(3):
        result: dict[str, Any] = slowlog.run(keys)
        for phase in result["phases"]:
            name = phase["phase"]
            best[name] = min(best.get(name, float("inf")), phase["slowlog_max_ms"])
            calls.setdefault(name, phase["script_calls"])
        if all(best[name] < LIMIT_MS for name in PHASES):
            break
    return best, calls


def test_no_script_blocks_redis_for_20_ms_and_more_keys_mean_more_calls_not_longer_ones() -> None:
    small_max, small_calls = measured(SMALL)
    large_max, large_calls = measured(LARGE)
    for name in PHASES:
        assert small_max[name] < LIMIT_MS and large_max[name] < LIMIT_MS, (name, small_max, large_max)
        # four times the keys: at least three times the script calls (a few calls are fixed per phase),
        # each bounded by a chunk, where one unchunked script would stay one call and take four times as long
        assert large_calls[name] >= 3 * small_calls[name], (name, small_calls, large_calls)
