"""Several managers (pods) sharing one Lease and one Redis: one leader at a time, fast hand-over,
and nothing lost when the leader's pod dies or is stopped."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from examples.widgets import WIDGETS, widget
from shard_operator.client import Client
from shard_operator.testing.runner import TEST_SETTINGS
from tests.e2e.observed import unobserved

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]


def create(kube: Client, namespace: str, names: range) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: kube.create(WIDGETS, widget(f"w-{i:03d}", namespace, size=i)), names))


def test_one_leader_sigkill_hands_over_within_the_lease_and_sigterm_within_three_seconds(
        kube: Client, namespace, redis_url, start_manager) -> None:
    a, b = start_manager("pod-a"), start_manager("pod-b")
    a.wait_ready()
    b.wait_ready()
    a.wait_for(lambda: a.leading or b.leading, 10, "a leader")
    assert [a.leading, b.leading].count(True) == 1
    leader, follower = (a, b) if a.leading else (b, a)

    # The leader's pod dies (manager and workers SIGKILLed) while widgets are being created.
    create(kube, namespace, range(0, 40))
    killed = time.monotonic()
    leader.kill()
    create(kube, namespace, range(40, 80))
    took = follower.wait_for(lambda: follower.leading, 15, "the follower to lead")
    lease, retry = float(TEST_SETTINGS["LEASE_DURATION"]), float(TEST_SETTINGS["RETRY_PERIOD"])
    assert time.monotonic() - killed <= lease + retry * 2.2 + 1.5, took  # + the time to see it through /readyz
    follower.wait_for(lambda: not unobserved(redis_url, namespace, 80), 60, "every widget to be observed")

    # A new pod joins; SIGTERM to the leader hands the Lease over at once.
    c = start_manager("pod-c")
    c.wait_ready()
    assert not c.leading
    create(kube, namespace, range(80, 100))
    stopped = time.monotonic()
    follower.terminate()
    c.wait_for(lambda: c.leading, 10, "pod-c to lead")
    assert time.monotonic() - stopped <= 3.0
    assert follower.wait(20) == 0
    c.wait_for(lambda: not unobserved(redis_url, namespace, 100), 60, "every widget to be observed")
    assert "Traceback" not in follower.output
