"""The leader keeps trying until its informers run: a Redis outage when it starts leading, or while it
relists after Redis lost its data, never leaves it holding the Lease with nothing running (I5); when
Redis answers again after an outage, the informers retry at once instead of waiting out their backoff.

The coordinator's thread never ticks here (its interval is an hour and its first tick waits one
interval): every tick is the test's, so nothing depends on how fast the machine is."""

from __future__ import annotations

import logging

import fakeredis
import pytest
import redis

from shard_operator import metrics
from shard_operator.cache.scope import Scope, Selectors
from shard_operator.keys import Keys
from shard_operator.manager.leading import Coordinator, LeaderRunner
from tests.waiting import eventually


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
    name, resource, namespaces = "demo", "widgets", None
    label_selector = field_selector = None

    def handlers_by_resource(self):
        return {"widgets": []}


class OpWithSecrets(Op):
    def handlers_by_resource(self):
        return {"widgets": [], "secrets": []}  # the primary resource, and one more watched for its events


class Cfg:
    pod_name, member_ttl, coordinate_interval = "pod-0", 10.0, 3600.0  # ticks are driven by the test
    namespaces = label_selector = field_selector = None
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


def test_the_coordinator_logs_a_redis_outage_as_a_storage_error_and_keeps_ticking(caplog):
    client = FlakyRedis()
    client.down = True
    coordinator = Coordinator(client, "demo", member_ttl=10.0, interval=0.02)
    with caplog.at_level(logging.WARNING, logger="shard_operator.manager.leading"):
        coordinator.start()
        try:
            eventually(lambda: len(caplog.records) >= 3, timeout=5, what="three failed ticks")
            assert coordinator._thread is not None and coordinator._thread.is_alive()
        finally:
            coordinator.stop()
    # StorageError's message (storage.redis_errors), not redis-py's exception caught in the manager
    assert all(r.getMessage() == "coordinator of demo: redis: Connection refused" for r in caplog.records[:3])


def test_the_ring_and_claim_counters_exist_at_zero_as_soon_as_leading_begins():
    class Fresh(Op):
        name = "fresh-leader"

    counters = ("shard_operator_shard_assignments_total", "shard_operator_shard_movements_total",
                "shard_operator_claim_expiries_total")
    assert 'controller="fresh-leader"' not in metrics.render().decode()
    leader = LeaderRunner(Fresh(), Cfg(), api_client=None, client=FlakyRedis())  # type: ignore[arg-type]
    leader._informer = lambda resource, handlers: FakeInformer(resource)  # type: ignore[method-assign]
    leader.start()
    try:
        exposed = metrics.render().decode().splitlines()
        for counter in counters:
            assert f'{counter}{{controller="fresh-leader"}} 0.0' in exposed
    finally:
        leader.stop()


def test_the_selectors_are_published_only_once_the_primary_resources_first_list_is_in_the_cache(runner):
    runner.operator = OpWithSecrets()
    runner.config.label_selector = "app=new"  # a restart with -l app=new
    runner._client.set(Keys.for_controller("demo").scope,  # the previous run's leader, listed with app=old
                       '{"namespaces": null, "selectors": {"label": "app=old", "field": null}}')
    runner.start()
    primary, secondary = runner.created
    primary.has_synced = secondary.has_synced = False  # both lists still running
    not_listed = Scope(None, None, tracks_selectors=True)
    assert Scope.load(runner._client, "demo") == not_listed  # published before the informers started
    tick(runner)
    assert Scope.load(runner._client, "demo") == not_listed
    primary.has_synced = True  # the primary's first list is in the cache (the secondary's need not be)
    tick(runner)
    listed = Scope(None, Selectors.of("app=new", None), tracks_selectors=True)
    assert Scope.load(runner._client, "demo") == listed
    assert listed.lists_with(Selectors.of("app=new", "")) and not not_listed.lists_with(Selectors.of("app=new", ""))


def test_informers_started_afresh_after_redis_lost_its_data_publish_their_selectors_again_once_listed(runner):
    runner.operator = OpWithSecrets()
    runner.config.label_selector = "app=new"
    runner.start()
    tick(runner)
    assert Scope.load(runner._client, "demo").listed == Selectors.of("app=new", None)
    runner._client.flushall()  # Redis lost its data: the informers are started afresh
    tick(runner)
    fresh = runner.created[2]
    fresh.has_synced = False
    assert len(runner.created) == 4 and Scope.load(runner._client, "demo") == Scope(None, None, tracks_selectors=True)
    tick(runner)
    assert Scope.load(runner._client, "demo").listed is None  # the new first list is not in yet
    fresh.has_synced = True
    tick(runner)
    assert Scope.load(runner._client, "demo").listed == Selectors.of("app=new", None)
