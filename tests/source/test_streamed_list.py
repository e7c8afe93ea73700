"""``on_list_streamed``: a relist reaches the list hook page by page and the leader keeps only
fingerprints, so its memory does not grow with the objects' size (issue 12, item 3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shard_operator.errors import ConfigError, GoneError
from shard_operator.source import Backoff, Event, EventType, Informer, Resource
from tests.waiting import eventually

from .fake_api import FakeListWatch

RESOURCE = Resource("example.com", "v1", "widgets")


class StreamRecorder:
    """Consumes each streamed list, noting how many list calls had been made before each object."""

    def __init__(self, api: FakeListWatch) -> None:
        self.api = api
        self.lists: list[tuple[str | None, list[str], str]] = []
        self.calls_seen: list[int] = []
        self.specs: list[Any] = []
        self.events: list[Event] = []
        self.fail_after_first: Exception | None = None

    def on_list(self, namespace: str | None, objects: Iterator[dict[str, Any]], version: str) -> None:
        names = []
        for obj in objects:
            self.calls_seen.append(sum(1 for call in self.api.calls if call[0] == "list"))
            names.append(obj["metadata"]["name"])
            assert "managedFields" not in obj["metadata"]  # transformed
            self.specs.append(obj.get("spec"))
            if self.fail_after_first is not None:
                self.api.list_failures, self.fail_after_first = [self.fail_after_first], None
        self.lists.append((namespace, names, version))

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def informer(api: FakeListWatch, recorder: StreamRecorder) -> Informer:
    return Informer(RESOURCE, recorder, list_watch=api, on_list_streamed=recorder.on_list, page_size=2,
                    watch_timeout=1, backoff=Backoff(initial=0.01, maximum=0.05))


def test_a_streamed_list_reaches_the_hook_page_by_page_and_its_events_carry_fingerprints():
    api = FakeListWatch()
    for i in range(5):
        api.put(f"w{i}", spec={"size": i}, metadata={"generation": 1})
    recorder = StreamRecorder(api)
    with informer(api, recorder) as running:
        assert running.wait_for_sync(5)
        assert recorder.lists == [(None, [f"w{i}" for i in range(5)], "105")]
        assert recorder.specs == [{"size": i} for i in range(5)]  # whole objects
        assert recorder.calls_seen == [1, 1, 2, 2, 3]  # each page read only when the hook wants it
        assert [(e.type, e.key, e.listed) for e in recorder.events] == [
            (EventType.ADDED, f"ns1/w{i}", True) for i in range(5)]
        assert all("spec" not in e.new and e.new["metadata"]["generation"] == 1  # type: ignore[operator,index]
                   for e in recorder.events)
        assert "spec" not in running.get("ns1/w0")  # type: ignore[operator]
        api.put("w0", spec={"size": 9}, metadata={"generation": 2})
        eventually(lambda: len(recorder.events) == 6)
        watched = recorder.events[-1]
        assert not watched.listed and watched.new["spec"] == {"size": 9}  # type: ignore[index]
        assert watched.old["metadata"]["generation"] == 1  # type: ignore[index]


def test_a_streamed_relist_after_410_reports_deletions_and_changes_as_listed_events():
    api = FakeListWatch()
    api.put("keep", metadata={"generation": 1})
    api.put("doomed")
    recorder = StreamRecorder(api)
    with informer(api, recorder) as running:
        running.wait_for_sync(5)
        api.watch_failures = [GoneError("gone", status=410)]
        api.interrupt()
        api.remove("ns1/doomed")
        api.put("keep", metadata={"generation": 2})
        api.compact()
        eventually(lambda: running.relists == 2)
        relisted = {(e.type, e.key, e.listed) for e in recorder.events[2:]}
        assert (EventType.DELETED, "ns1/doomed", True) in relisted
        assert (EventType.MODIFIED, "ns1/keep", True) in relisted
        modified = next(e for e in recorder.events[2:] if e.type is EventType.MODIFIED)
        assert (modified.old["metadata"]["generation"], modified.new["metadata"]["generation"]) == (1, 2)  # type: ignore[index]
        assert recorder.lists[-1][1] == ["keep"]


def test_a_list_that_fails_between_pages_is_never_taken_as_whole_and_is_read_again():
    api = FakeListWatch()
    for i in range(5):
        api.put(f"w{i}")
    recorder = StreamRecorder(api)
    recorder.fail_after_first = ConnectionResetError("dropped between pages")
    with informer(api, recorder) as running:
        assert running.wait_for_sync(5)
        assert recorder.lists == [(None, [f"w{i}" for i in range(5)], "105")]  # only the whole list
        assert [e.key for e in recorder.events] == [f"ns1/w{i}" for i in range(5)]
        assert sum(call[0] == "list" for call in api.calls) == 2 + 3  # page 2 failed, then 3 pages


def test_an_informer_takes_one_kind_of_list_hook():
    with pytest.raises(ConfigError):
        Informer(RESOURCE, lambda e: None, list_watch=FakeListWatch(), on_list=lambda *a: None,
                 on_list_streamed=lambda *a: None)


def test_with_handler_many_the_events_of_a_streamed_list_arrive_in_batches():
    api = FakeListWatch()
    for i in range(5):
        api.put(f"w{i}")
    recorder = StreamRecorder(api)
    batches: list[list[str]] = []
    running = Informer(RESOURCE, recorder, list_watch=api, on_list_streamed=recorder.on_list, page_size=2,
                       watch_timeout=1, handler_many=lambda events: batches.append([e.key for e in events]))
    with running:
        assert running.wait_for_sync(5)
        assert batches == [[f"ns1/w{i}" for i in range(5)]] and recorder.events == []
