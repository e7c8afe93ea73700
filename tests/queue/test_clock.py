"""One clock: the scripts read Redis ``TIME``, so the hosts' own clocks change nothing.

The skew tests run each caller in its own process whose ``time.time`` is shifted before
shard_operator is imported, as on a host whose clock is off: whatever the queue might read from the
local clock is skewed there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from shard_operator.keys import Keys
from shard_operator.queue import ManualClock, WorkQueue
from shard_operator.sharding import Assigner, Membership
from tests.queue.backends import publish_ring

_SKEWED = textwrap.dedent("""
    import json, sys, time
    offset, url, prefix, mode = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    real_time = time.time
    time.time = lambda: real_time() + offset  # this host's clock is off by `offset` seconds
    import redis
    from shard_operator.keys import Keys
    from shard_operator.queue import RateLimitingQueue, TokenBucket
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    if mode == "take":
        queue = RateLimitingQueue(client, keys, bucket=TokenBucket(qps=10.0, burst=10), max_wait=0.02)
        print("ready", flush=True)
        start = float(sys.stdin.readline())  # CLOCK_MONOTONIC is one clock for every process of the host
        time.sleep(max(0.0, start - time.monotonic()))
        taken = 0
        while time.monotonic() < start + 3.0:
            item = queue.get("s0", f"skew{offset}", timeout=0.02)
            if item is not None:
                queue.done(item)
                taken += 1
        print(json.dumps(taken))
    else:
        print(json.dumps(RateLimitingQueue(client, keys, bucket=None).reap_expired()))
""")


def run_skewed(offset: float, url: str, keys: Keys, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _SKEWED, repr(offset), url, keys.prefix, mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen[str]) -> int:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    return int(json.loads(out.split()[-1]))


@pytest.mark.redis
def test_callers_half_a_second_apart_hand_out_no_more_than_the_bucket_allows(redis_url):
    client = redis.Redis.from_url(redis_url)
    keys = Keys.for_controller("skew")
    publish_ring(client, keys, None, "s0")
    WorkQueue(client, keys).add_many([f"ns/k{i}" for i in range(500)])
    callers = [run_skewed(offset, redis_url, keys, "take") for offset in (0.5, -0.5, 0.25, -0.25)]
    for caller in callers:
        assert caller.stdout is not None and caller.stdout.readline().strip() == "ready"
    start = time.monotonic() + 0.5
    for caller in callers:
        assert caller.stdin is not None
        caller.stdin.write(f"{start!r}\n")
        caller.stdin.flush()
    taken = sum(result(caller) for caller in callers)
    client.close()
    # qps 10, burst 10, 3 s: the burst and 30 refills (about 40); with each caller's own clock, skewed
    # stamps refilled the bucket over and over (4,254 keys at 0.5 s of skew).
    assert 15 <= taken <= 42


@pytest.mark.redis
def test_a_leader_clock_a_minute_ahead_reaps_no_live_claim(redis_url):
    client = redis.Redis.from_url(redis_url)
    keys = Keys.for_controller("ahead")
    publish_ring(client, keys, None, "s0")
    queue = WorkQueue(client, keys, claim_ttl=30.0)
    queue.add("ns/a")
    item = queue.get("s0", "worker")
    assert item is not None
    assert result(run_skewed(60.0, redis_url, keys, "reap")) == 0
    queue.renew(item)
    queue.done(item)
    client.close()


def test_deadlines_and_times_come_from_redis(client, keys):
    publish_ring(client, keys, None, "s0")
    queue = WorkQueue(client, keys, claim_ttl=30.0)
    queue.add("ns/a")
    before = time.monotonic()
    item = queue.get("s0", "w")
    assert item is not None
    server_now = float(".".join(part.decode() if isinstance(part, bytes) else str(part)
                                for part in client.execute_command("TIME")))
    assert item.deadline == pytest.approx(item.claimed_at + 30.0, abs=1e-5)
    assert item.enqueued_at <= item.claimed_at <= server_now
    assert before + 29.0 < item.local_deadline <= time.monotonic() + 30.0


def test_a_manual_clock_drives_every_script_of_the_queue_and_the_ring(client, keys):
    clock = ManualClock()
    Membership(client, keys, "s0", clock=clock).heartbeat()
    assigner = Assigner(client, keys, clock=clock, member_ttl=10.0)
    assert assigner.rebalance().changed
    queue = WorkQueue(client, keys, clock=clock)
    queue.add("ns/a")
    item = queue.get("s0", "w")
    assert item is not None and item.claimed_at == clock() and item.deadline == clock() + 30.0
    clock.step(11.0)
    assert assigner.rebalance().changed, "the member's heartbeat is 11 manual seconds old"


@pytest.mark.parametrize("make", [
    lambda client, keys: WorkQueue(client, keys, clock=time.time),
    lambda client, keys: Membership(client, keys, "s0", clock=time.time),
    lambda client, keys: Assigner(client, keys, clock=time.time),
])
def test_production_code_cannot_hand_the_scripts_its_own_clock(client, keys, make):
    with pytest.raises(TypeError):
        make(client, keys)
