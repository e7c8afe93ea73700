"""Reconcile errors are visible: one ERROR record with the traceback per key per interval, a Warning Event
on the object, and the last error in ``<prefix>:errors`` (what ``shard-operator status`` shows) while the
key retries; success clears it. Runs the worker in a thread against the real redis-server, over the fake
API server of :mod:`shard_operator.testing`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from shard_operator.client import EventRecorder
from shard_operator.errors import TerminalError
from shard_operator.keys import Keys
from shard_operator.manager.status import collect_status
from shard_operator.queue import RateLimitingQueue
from shard_operator.reconcile import Request, Result
from shard_operator.sharding import Assigner, Membership
from shard_operator.source import Resource
from shard_operator.testing.fake_api import FakeCache, FakeClient, ObjectStore
from shard_operator.worker.runner import ShardWorker

pytestmark = pytest.mark.redis

CONTROLLER = "errors"
KEYS = Keys.for_controller(CONTROLLER)
WIDGETS = Resource("example.shard-operator.dev", "v1", "widgets")
ERRORS = f"{KEYS.prefix}:errors"
WORKER_LOG = "shard_operator.worker.reporting"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    Membership(c, KEYS, "s0").heartbeat()
    Assigner(c, KEYS).rebalance()
    yield c
    c.close()


@pytest.fixture
def store() -> ObjectStore:
    objects = ObjectStore()
    for name in ("w1", "w2"):
        objects.put(WIDGETS, {"apiVersion": "example.shard-operator.dev/v1", "kind": "Widget",
                              "metadata": {"name": name, "namespace": "ns"}, "spec": {}})
    return objects


def run_until(client: redis.Redis, store: ObjectStore, reconcile: Callable, done: Callable[[], bool],
              timeout: float = 20.0) -> None:
    queue = RateLimitingQueue(client, KEYS, bucket=None)
    fake = FakeClient(store)
    worker = ShardWorker(queue, reconcile, controller=CONTROLLER, shard="s0", owner="w1", get_timeout=0.05,
                         cache=FakeCache(store), client=fake, recorder=EventRecorder(fake, CONTROLLER, instance="t"),
                         resource=WIDGETS)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert done(), "the worker did not get there in time"


def events(store: ObjectStore) -> list[tuple[str, str, str, str]]:
    return [(e["involvedObject"]["name"], e["type"], e["reason"], e["message"])
            for e in store.of(Resource("", "v1", "events")).values()]


def test_a_failing_reconcile_logs_one_traceback_records_a_warning_and_shows_in_status_until_it_succeeds(
        client, store, caplog):
    RateLimitingQueue(client, KEYS, bucket=None).add("ns/w1")
    tries: list[int] = []
    while_failing: list[bytes | None] = []
    status_while_failing: list[dict] = []

    def reconcile(request: Request, ctx) -> Result | None:
        tries.append(1)
        if len(tries) < 4:
            raise RuntimeError(f"boom {len(tries)}")
        while_failing.append(client.hget(ERRORS, request.key))
        status_while_failing.append(collect_status(client, CONTROLLER)["retrying"])
        return None

    with caplog.at_level(logging.DEBUG, logger=WORKER_LOG):
        run_until(client, store, reconcile, lambda: len(tries) >= 4 and not client.hexists(ERRORS, "ns/w1"))

    errors = [r for r in caplog.records if r.name == WORKER_LOG and r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # three failures within a minute: one traceback
    assert errors[0].exc_info is not None and "RuntimeError: boom 1" in errors[0].getMessage()
    assert "Traceback" in caplog.text and 'raise RuntimeError(f"boom' in caplog.text
    repeats = [r for r in caplog.records if r.name == WORKER_LOG and r.levelno == logging.DEBUG
               and "failed again" in r.getMessage()]
    assert len(repeats) == 2
    assert events(store) == [("w1", "Warning", "ReconcileError", "RuntimeError: boom 1")]
    assert while_failing == [b"RuntimeError: boom 3"]
    assert status_while_failing[0]["ns/w1"]["last_error"] == "RuntimeError: boom 3"
    assert not client.hexists(ERRORS, "ns/w1")  # the success cleared it


def test_the_stored_error_is_truncated_and_a_terminal_error_is_logged_but_not_kept_as_retrying(
        client, store, caplog):
    RateLimitingQueue(client, KEYS, bucket=None).add_many(["ns/w1", "ns/w2"])
    seen: dict[str, int] = {}

    def reconcile(request: Request, ctx) -> Result | None:
        seen[request.key] = seen.get(request.key, 0) + 1
        if request.key == "ns/w2":
            raise TerminalError("the spec is invalid")
        if seen[request.key] == 1:
            raise ValueError("x" * 1000)
        return Result(requeue_after=60)  # a success that polls also clears the error

    stored: list[bytes | None] = []

    def check_after_first(request: Request, ctx) -> Result | None:
        if request.key == "ns/w1" and seen.get("ns/w1") == 1:
            stored.append(client.hget(ERRORS, "ns/w1"))
        return reconcile(request, ctx)

    with caplog.at_level(logging.INFO, logger=WORKER_LOG):
        run_until(client, store, check_after_first, lambda: seen.get("ns/w1", 0) >= 2 and seen.get("ns/w2", 0) >= 1
                  and not client.hexists(ERRORS, "ns/w1"))
    assert stored and len(stored[0] or b"") == 300 and (stored[0] or b"").startswith(b"ValueError: xxx")
    assert not client.hexists(ERRORS, "ns/w2")
    terminal = [r for r in caplog.records if r.levelno == logging.ERROR and "ns/w2" in r.getMessage()]
    assert len(terminal) == 1 and "terminally" in terminal[0].getMessage()
    assert ("w2", "Warning", "ReconcileError", "TerminalError: the spec is invalid") in events(store)


def test_a_conflict_is_one_info_line_without_traceback_or_event_but_shows_in_status(client, store, caplog):
    from shard_operator.errors import ConflictError

    RateLimitingQueue(client, KEYS, bucket=None).add("ns/w1")
    stored: list[bytes | None] = []

    def reconcile(request: Request, ctx) -> Result | None:
        if not stored:
            stored.append(None)
            raise ConflictError("the object has been modified", status=409, reason="Conflict")
        stored.append(client.hget(ERRORS, request.key))
        return None

    with caplog.at_level(logging.DEBUG, logger=WORKER_LOG):
        run_until(client, store, reconcile, lambda: len(stored) >= 2 and not client.hexists(ERRORS, "ns/w1"))
    assert stored[1] == b"ConflictError: the object has been modified"
    records = [r for r in caplog.records if r.name == WORKER_LOG and "ns/w1" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO] and records[0].exc_info is None
    assert events(store) == []
