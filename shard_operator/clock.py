"""The one clock of the queue and the ring: Redis ``TIME``, read inside the scripts.

Claim deadlines, due times (``add_after``, backoff), the token bucket and member heartbeats are
compared across processes and hosts, so they are all read from one clock, the Redis server's: every
script that needs ``now`` calls :data:`LUA_NOW`'s ``clock_now()``, and no caller passes a time. Skew
between the hosts of a deployment therefore changes nothing (a leader clock ahead by a minute reaps
no live claim; skewed callers share one token bucket honestly). Scripts that call ``TIME`` need
Redis >= 5, whose scripts replicate their effects rather than their source.

Tests step time instead of sleeping with a :class:`ManualClock`: a queue, membership or assigner
built with ``clock=ManualClock()`` passes the manual time to its scripts as ``ARGV[2]``, which
``clock_now()`` then returns instead of ``TIME``. Only a ``ManualClock`` is accepted there
(:func:`check_clock`), so production code cannot hand the scripts a host's own clock by accident.
"""

from __future__ import annotations

import threading

__all__ = ["LUA_NOW", "ManualClock", "check_clock", "script_time"]

# ARGV[2] is '' in production; a test's ManualClock puts its time there. clock_now() reads it once.
LUA_NOW = """
local CLOCK_NOW = nil
local function clock_now()
  if CLOCK_NOW == nil then
    if ARGV[2] ~= '' then CLOCK_NOW = tonumber(ARGV[2]) else
      local t = redis.call('TIME')
      CLOCK_NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
    end
  end
  return CLOCK_NOW
end
local function num(x) return string.format('%.6f', x) end
"""


class ManualClock:
    """A clock that moves only when told to: ``clock()`` reads it, ``step(seconds)`` advances it.

    For tests only: the scripts of a queue built with it read this time instead of Redis ``TIME``.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def step(self, seconds: float) -> float:
        """Advance by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock never goes back")
        with self._lock:
            self._now += seconds
            return self._now


def check_clock(clock: ManualClock | None) -> ManualClock | None:
    """Refuse any clock but a test's :class:`ManualClock`: production time comes from Redis."""
    if clock is not None and not isinstance(clock, ManualClock):
        raise TypeError("clock= takes a ManualClock (tests only); the scripts read Redis TIME otherwise")
    return clock


def script_time(clock: ManualClock | None) -> str:
    """``ARGV[2]`` of a script: '' (Redis ``TIME``), or the manual time of a test clock."""
    return "" if clock is None else repr(clock())
