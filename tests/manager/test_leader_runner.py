"""The leader keeps trying until its informers run: a Redis outage when it starts leading, or while it
relists after Redis lost its data, never leaves it holding the Lease with nothing running (I5); when
Redis answers again after an outage, the informers retry at once instead of waiting out their backoff.

The coordinator's thread never ticks here (its interval is an hour and its first tick waits one
interval): every tick is the test's, so nothing depends on how fast the machine is."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from shard_operator.keys import Keys
from shard_operator.manager.leading import LeaderRunner


class FakeInformer:
    def __init__(self, name: str) -> None:
        self.name, self.has_synced, self.started, self.stopped = name, True, False, False
        self.retried = 0

    def start(self) -> None:
        self.started = True

    def stop(self, timeout: float | None = None) -> None:
        self.stopped = True

    def retry_now(self) -> None:
        self.retried += 1


class FlakyRedis(fakeredis.FakeRedis):
    """A client whose next ``failures`` SET commands fail as if the connection dropped."""

    failures = 0
    down = False  # every command fails, as while redis-server is stopped

    def set(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("Connection reset by peer")
        return super().set(*args, **kwargs)

    def execute_command(self, *args, **kwargs):
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return super().execute_command(*args, **kwargs)


class Op:
    name, namespaces = "demo", None

    def handlers_by_resource(self):
        return {"widgets": []}


class Cfg:
    pod_name, member_ttl, coordinate_interval = "pod-0", 10.0, 3600.0  # ticks are driven by the test
    namespaces = None
    sharded_ingest = False


@pytest.fixture
def runner():
    client = FlakyRedis()
    leader = LeaderRunner(Op(), Cfg(), api_client=None, client=client)  # type: ignore[arg-type]
    created: list[FakeInformer] = []

    def informer(resource, handlers):
        created.append(FakeInformer(resource))
        return created[-1]

    leader._informer = informer  # type: ignore[method-assign]
    leader.created = created  # type: ignore[attr-defined]
    yield leader
    leader.stop()


def tick(runner: LeaderRunner) -> None:
    assert runner._coordinator is not None
    runner._coordinator.tick()


def test_informers_start_on_a_later_tick_when_redis_was_down_as_leadership_began(runner):
    runner._client.failures = 1
    runner.start()  # must not raise: the elector would only log it
    assert runner.leading and not runner.has_synced and runner.created == []
    tick(runner)
    assert [informer.started for informer in runner.created] == [True]
    assert runner._client.get(Keys.for_controller("demo").cache_marker) == b"pod-0"


def test_a_lost_cache_marker_restarts_the_informers_even_if_the_first_relist_fails(runner):
    runner.start()
    first = runner.created[0]
    runner._client.flushall()  # Redis lost its data
    runner._client.failures = 1  # ...and drops the connection once more during the relist
    tick(runner)
    assert first.stopped and len(runner.created) == 1  # the relist could not start yet
    tick(runner)
    assert len(runner.created) == 2 and runner.created[1].started and runner.has_synced


def test_a_stopped_runner_starts_nothing_on_a_late_tick(runner):
    runner._client.failures = 1
    runner.start()
    coordinator = runner._coordinator
    runner.stop()
    coordinator.tick()
    assert runner.created == [] and not runner.leading


def test_the_first_tick_after_a_redis_outage_makes_the_informers_retry_at_once(runner):
    runner.start()
    informer = runner.created[0]
    tick(runner)
    assert informer.retried == 0  # Redis was never down: nothing to cut short
    runner._client.down = True
    with pytest.raises(redis.ConnectionError):
        tick(runner)
    with pytest.raises(redis.ConnectionError):
        tick(runner)
    assert informer.retried == 0
    runner._client.down = False
    tick(runner)
    assert informer.retried == 1 and not informer.stopped  # the data survived: no relist from scratch
    tick(runner)
    assert informer.retried == 1
