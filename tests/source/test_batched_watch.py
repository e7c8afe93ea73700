"""``handler_many``: watch events that arrive together are handled in one call (issue 12, item 4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shard_operator.source import Backoff, Event, Informer, Resource
from tests.waiting import eventually

from .fake_api import FakeListWatch

RESOURCE = Resource("example.com", "v1", "widgets")


class BatchingListWatch(FakeListWatch):
    """The fake API with ``watch_batches``: every event pending when a watch is read comes as one batch."""

    def watch_batches(self, namespace: str | None, *, resource_version: str,
                      timeout_seconds: int) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        for raw in self.watch(namespace, resource_version=resource_version, timeout_seconds=timeout_seconds):
            batch.append(raw)
            with self._cond:
                more = any(version > int(raw["object"]["metadata"].get("resourceVersion") or 0)
                           for version, _, _ in self.history)
            if not more or raw["type"] == "BOOKMARK":
                yield batch
                batch = []
        if batch:
            yield batch


def test_events_that_arrive_together_reach_handler_many_in_one_call_in_order():
    api = BatchingListWatch()
    single: list[Event] = []
    batches: list[list[tuple[str, str]]] = []
    informer = Informer(RESOURCE, single.append, list_watch=api, watch_timeout=1,
                        handler_many=lambda events: batches.append([(e.type.value, e.key) for e in events]))
    api.put("a")
    with informer:
        assert informer.wait_for_sync(5)
        with api._cond:  # three changes land before the watch reads any of them
            api.put("a", spec={"v": 2})
            api.put("b")
            api.remove("ns1/a")
        eventually(lambda: [e for batch in batches for e in batch] == [
            ("MODIFIED", "ns1/a"), ("ADDED", "ns1/b"), ("DELETED", "ns1/a")])
        assert len(batches) == 1
        assert [e.key for e in single] == ["ns1/a"]  # the list's event went to handler


def test_a_failed_batch_is_undone_whole_and_delivered_again_after_the_relist():
    api = BatchingListWatch()
    failures = [1]
    delivered: list[tuple[str, str]] = []

    def handle_many(events: list[Event]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("redis: connection reset")
        delivered.extend((e.type.value, e.key) for e in events)

    informer = Informer(RESOURCE, lambda e: delivered.append((e.type.value, e.key)), list_watch=api,
                        watch_timeout=1, handler_many=handle_many, backoff=Backoff(initial=0.01, maximum=0.05))
    api.put("a")
    with informer:
        assert informer.wait_for_sync(5)
        with api._cond:
            api.put("b")
            api.remove("ns1/a")
        eventually(lambda: {("ADDED", "ns1/b"), ("DELETED", "ns1/a")} <= set(delivered))
        assert informer.relists == 2
