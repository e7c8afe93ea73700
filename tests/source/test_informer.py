"""The informer's list/watch loop against an in-memory API: resume, relist, backoff, resync, stop."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from shard_operator.cache import CacheReader, CacheWriter
from shard_operator.errors import ApiError, ConfigError, GoneError, TooManyRequestsError
from shard_operator.source import Backoff, Event, EventType, Informer, Resource
from tests.waiting import eventually

from .fake_api import FakeListWatch

RESOURCE = Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.01, maximum=0.05)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lists: list[tuple[str | None, list[str], str]] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def on_list(self, namespace: str | None, objects: list[dict[str, Any]], version: str) -> None:
        self.lists.append((namespace, sorted(o["metadata"]["name"] for o in objects), version))

    def seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e.type.value, e.key) for e in self.events]


@pytest.fixture
def api() -> FakeListWatch:
    return FakeListWatch()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def start(api: FakeListWatch, recorder: Recorder) -> Iterator[Callable[..., Informer]]:
    informers: list[Informer] = []

    def make(**options: Any) -> Informer:
        options.setdefault("on_list", recorder.on_list)
        informer = Informer(RESOURCE, options.pop("handler", recorder), list_watch=api, backoff=FAST,
                            watch_timeout=1, **options)
        informers.append(informer.start())
        return informer

    yield make
    for informer in informers:
        informer.stop()


def test_the_informer_lists_in_pages_then_watches_and_reports_synced(api, recorder, start):
    for i in range(7):
        api.put(f"w{i}")
    informer = start(page_size=3)
    assert informer.wait_for_sync(5)
    assert informer.has_synced
    assert [call[2] for call in api.calls if call[0] == "list"] == [None, "3", "6"]
    assert recorder.seen() == [("ADDED", f"ns1/w{i}") for i in range(7)]
    api.put("w7")
    eventually(lambda: recorder.seen()[-1] == ("ADDED", "ns1/w7"))


def test_events_carry_the_new_object_whole_and_the_old_one_as_its_fingerprint(api, recorder, start):
    api.put("a", spec={"size": 1}, metadata={"generation": 1, "labels": {"app": "x"}, "uid": "u1",
                                             "finalizers": ["f"], "annotations": {"long": "v" * 300}})
    start().wait_for_sync(5)
    api.put("a", spec={"size": 2}, metadata={"generation": 2, "labels": {"app": "y"}, "uid": "u1"})
    api.remove("ns1/a")
    eventually(lambda: len(recorder.events) == 3)
    added, modified, deleted = recorder.events
    assert added.old is None and added.new["spec"] == {"size": 1}
    assert modified.type is EventType.MODIFIED and modified.new["spec"] == {"size": 2}
    assert "spec" not in modified.old  # the leader keeps no full copy: the shared cache has it
    old_meta = modified.old["metadata"]
    assert (old_meta["name"], old_meta["uid"], old_meta["generation"]) == ("a", "u1", 1)
    assert old_meta["labels"] == {"app": "x"} and old_meta["finalizers"] == ["f"]
    assert old_meta["annotations"] == {"long": "v" * 300}
    assert modified.old["apiVersion"] == "example.com/v1" and modified.old["kind"] == "Widget"
    assert deleted.type is EventType.DELETED and deleted.new is None
    assert deleted.old["spec"] == {"size": 2}  # the watch's final state is whole


def test_managed_fields_are_dropped_by_default_and_a_custom_transform_replaces_that(api, recorder, start):
    api.put("a")
    start().wait_for_sync(5)
    assert "managedFields" not in recorder.events[0].new["metadata"]
    other = Recorder()
    start(handler=other, transform=lambda o: {**o, "seen": True}).wait_for_sync(5)
    assert other.events[0].new["seen"] and "managedFields" in other.events[0].new["metadata"]


def test_a_dropped_watch_resumes_from_the_last_version_without_a_relist(api, recorder, start):
    api.put("a")
    api.watch_failures = [ConnectionResetError("peer went away")]
    informer = start()
    informer.wait_for_sync(5)
    api.put("b")
    eventually(lambda: ("ADDED", "ns1/b") in recorder.seen())
    watches = [call for call in api.calls if call[0] == "watch"]
    assert watches[0][2] == watches[1][2] == "101"
    assert informer.relists == 1


@pytest.mark.parametrize("gone", [GoneError("gone", status=410),
                                  {"kind": "Status", "code": 410, "reason": "Expired", "message": "old"}],
                         ids=["http-410", "error-event-410"])
def test_410_gone_relists_and_reports_what_changed_meanwhile(api, recorder, start, gone):
    api.put("keep")
    api.put("doomed")
    informer = start()
    informer.wait_for_sync(5)
    # While the watch is broken: one object is deleted, one created, and history is compacted.
    api.watch_failures = [ConnectionResetError("drop"), gone]
    api.interrupt()
    api.remove("ns1/doomed")
    api.put("born")
    api.compact()
    eventually(lambda: informer.relists == 2)
    eventually(lambda: {("DELETED", "ns1/doomed"), ("ADDED", "ns1/born")} <= set(recorder.seen()))
    assert sorted(o["metadata"]["name"] for o in informer.list()) == ["born", "keep"]
    assert recorder.lists[-1][:2] == (None, ["born", "keep"])


@pytest.mark.redis
def test_after_a_relist_the_shared_cache_converges_and_forgets_objects_deleted_meanwhile(api, start, redis_url):
    client = redis.Redis.from_url(redis_url)
    writer, reader = CacheWriter(client), CacheReader(client)
    kind = RESOURCE.name
    api.put("keep")
    api.put("doomed")
    informer = start(handler=writer.handler_for(kind), on_list=writer.list_hook_for(kind))
    informer.wait_for_sync(5)
    assert reader.keys(kind) == ["ns1/doomed", "ns1/keep"]
    api.watch_failures = [GoneError("gone", status=410)]
    api.interrupt()  # ends the open watch; the next one gets 410
    api.remove("ns1/doomed")
    api.put("keep", spec={"v": 2})
    api.compact()
    eventually(lambda: reader.keys(kind) == ["ns1/keep"])
    eventually(lambda: reader.get(kind, "ns1/keep").get("spec") == {"v": 2})
    client.close()


def test_an_expired_continue_token_restarts_the_list_from_the_first_page(api, recorder, start):
    for i in range(5):
        api.put(f"w{i}")
    original = api.list
    failed = []

    def expiring_list(namespace, *, limit, continue_token):
        if continue_token and not failed:
            failed.append(continue_token)
            raise GoneError("continue token expired", status=410, reason="Expired")
        return original(namespace, limit=limit, continue_token=continue_token)

    api.list = expiring_list  # type: ignore[method-assign]
    start(page_size=2).wait_for_sync(5)
    assert failed == ["2"]
    assert len(recorder.events) == 5


def test_throttling_waits_at_least_retry_after(api, recorder, start):
    api.list_failures = [TooManyRequestsError("slow down", retry_after=0.4)]
    start().wait_for_sync(5)
    lists = [call[3] for call in api.calls if call[0] == "list"]
    assert lists[1] - lists[0] >= 0.4


def test_errors_back_off_exponentially_and_the_informer_recovers(api, recorder, start):
    api.list_failures = [ApiError("boom", status=500) for _ in range(4)]
    api.put("a")
    informer = start()
    assert informer.wait_for_sync(5)
    times = [call[3] for call in api.calls if call[0] == "list"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 4 and gaps[-1] > gaps[0]
    assert recorder.seen() == [("ADDED", "ns1/a")]


def test_a_failing_handler_makes_the_informer_relist_and_hand_over_the_full_state(api, recorder, start):
    api.put("a")
    failures = [RuntimeError("redis is down")]

    def flaky(event: Event) -> None:
        if event.key == "ns1/b" and failures:
            raise failures.pop()
        recorder(event)

    informer = start(handler=flaky)
    informer.wait_for_sync(5)
    api.put("b")
    eventually(lambda: informer.relists == 2)
    eventually(lambda: recorder.lists[-1][1] == ["a", "b"])


def test_resync_redelivers_every_known_object_as_modified(api, recorder, start):
    api.put("a")
    start(resync_period=0.1).wait_for_sync(5)
    eventually(lambda: recorder.seen().count(("MODIFIED", "ns1/a")) >= 2)
    resynced = recorder.events[-1]
    assert resynced.old is resynced.new


def test_several_namespaces_each_get_their_own_list_and_watch(api, recorder, start):
    api.put("a", namespace="ns1")
    api.put("b", namespace="ns2")
    api.put("c", namespace="ns3")
    informer = start(namespaces=["ns1", "ns2"])
    informer.wait_for_sync(5)
    assert sorted(recorder.seen()) == [("ADDED", "ns1/a"), ("ADDED", "ns2/b")]
    api.put("d", namespace="ns3")
    api.put("e", namespace="ns2")
    eventually(lambda: ("ADDED", "ns2/e") in recorder.seen())
    assert ("ADDED", "ns3/d") not in recorder.seen()
    assert informer.get("ns2/e") is not None and informer.get("ns3/c") is None


def test_stop_returns_promptly_and_has_synced_stays_true(api, recorder, start):
    informer = start()
    informer.wait_for_sync(5)
    began = time.monotonic()
    informer.stop()
    assert time.monotonic() - began < 1.0
    assert informer.has_synced and informer.stopped


def test_invalid_scopes_are_refused(api, recorder):
    with pytest.raises(ConfigError):
        Informer(Resource("", "v1", "nodes", namespaced=False), recorder, list_watch=api, namespaces="ns1")
    with pytest.raises(ConfigError):
        Informer(RESOURCE, recorder, list_watch=api, namespaces=[])
    with pytest.raises(ConfigError):
        Informer(RESOURCE, recorder)


@pytest.mark.parametrize("change", ["modify", "delete"])
def test_a_change_whose_handler_failed_is_delivered_again_after_the_relist(api, change):
    api.put("a")
    delivered: list[tuple[str, str | None]] = []
    failures = [0]

    def handler(event: Event) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("redis: connection reset")  # e.g. the queue's add failed
        delivered.append((event.type.value, event.new["metadata"]["resourceVersion"] if event.new else None))

    informer = Informer(RESOURCE, handler, list_watch=api, backoff=Backoff(initial=0.01, maximum=0.05))
    informer.start()
    try:
        assert informer.wait_for_sync(5)
        failures[0] = 1
        if change == "modify":
            api.put("a", spec={"x": 2})
            wanted = ("MODIFIED", api.objects["ns1/a"]["metadata"]["resourceVersion"])
        else:
            api.remove("ns1/a")
            wanted = ("DELETED", None)
        eventually(lambda: wanted in delivered)
    finally:
        informer.stop()


def test_a_throttled_watch_restart_waits_at_least_retry_after_and_keeps_its_version(api, recorder, start):
    api.put("a")
    api.watch_failures = [TooManyRequestsError("slow down", retry_after=0.4)]
    informer = start()
    assert informer.wait_for_sync(5)
    eventually(lambda: len([c for c in api.calls if c[0] == "watch"]) >= 2)
    watches = [call for call in api.calls if call[0] == "watch"]
    assert watches[1][3] - watches[0][3] >= 0.4
    assert watches[1][2] == watches[0][2]  # resumed from the same version: no relist
    assert [call[0] for call in api.calls].count("list") == 1


def test_retry_now_ends_a_long_backoff_at_once_after_the_cause_has_gone(api, recorder):
    api.put("a")
    redis_down = [True]

    def handler(event: Event) -> None:
        if redis_down[0]:
            raise redis.ConnectionError("Connection refused")
        recorder(event)

    informer = Informer(RESOURCE, handler, list_watch=api, watch_timeout=1,
                        backoff=Backoff(initial=30, maximum=60, jitter=0))
    with informer:
        eventually(lambda: informer.relists == 1)  # listed, the handler failed: 30 s to wait
        redis_down[0] = False
        started = time.monotonic()
        informer.retry_now()
        assert informer.wait_for_sync(5)
        assert time.monotonic() - started < 2
        assert recorder.seen() == [("ADDED", "ns1/a")]


def test_retry_now_does_not_shorten_the_wait_a_429_asked_for(api, recorder):
    api.list_failures = [TooManyRequestsError("slow down", retry_after=1.0)]
    informer = Informer(RESOURCE, recorder, list_watch=api, watch_timeout=1, backoff=FAST)
    with informer:
        eventually(lambda: len(api.calls) == 1)
        informer.retry_now()
        assert informer.wait_for_sync(5)
    lists = [call[3] for call in api.calls if call[0] == "list"]
    assert lists[1] - lists[0] >= 1.0
