"""The health endpoints, the coordinator's duties and the status summary, without a cluster."""

from __future__ import annotations

import urllib.error
import urllib.request

import fakeredis
import pytest

from examples.widgets import WIDGETS, operator
from shard_operator.errors import ConfigError
from shard_operator.handler import For, Owns
from shard_operator.keys import Keys
from shard_operator.manager import Coordinator, HealthServer
from shard_operator.manager.status import collect_status, format_status
from shard_operator.operator import Operator
from shard_operator.queue import RateLimitingQueue
from shard_operator.sharding import Membership
from shard_operator.source import Resource


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_server_answers_healthz_readyz_and_metrics() -> None:
    state = {"ready": (False, "workers not joined: p-w0")}

    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1", 0, healthy=lambda: (True, "ok"), ready=lambda: state["ready"]).start()
    try:
        assert fetch(server.port, "/healthz") == (200, "ok")
        assert fetch(server.port, "/readyz") == (503, "workers not joined: p-w0")
        state["ready"] = (True, "ok (leader)")
        assert fetch(server.port, "/readyz") == (200, "ok (leader)")
        status, text = fetch(server.port, "/metrics")
        assert status == 200 and "controller_runtime_reconcile_total" in text
        assert fetch(server.port, "/nothing")[0] == 404
    finally:
        server.stop()
    failing = HealthServer("127.0.0.1", 0, healthy=broken, ready=broken).start()
    try:
        assert fetch(failing.port, "/healthz") == (503, "check failed: boom")
    finally:
        failing.stop()


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_coordinator_publishes_the_ring_and_queues_keys_to_live_shards(client) -> None:
    keys = Keys.for_controller("widgets")
    queue = RateLimitingQueue(client, keys, bucket=None)
    queue.add_many(["ns/a", "ns/b", "ns/c"])  # before any shard: pending
    Membership(client, keys, "p-w0").heartbeat()
    coordinator = Coordinator(client, "widgets", member_ttl=5.0, interval=0.1)
    coordinator.tick()
    assert [s.decode() for s in client.lrange(keys.ring, 0, -1)] == ["p-w0"]
    assert queue.len("p-w0") == 3
    item = queue.get("p-w0", "me", timeout=0)
    assert item is not None

    status = collect_status(client, "widgets", member_ttl=5.0)
    assert status["live_shards"] == ["p-w0"] and status["epoch"] == 1
    assert status["queue_depth"] == {"p-w0": 2}
    assert status["in_flight"] == [item.key]
    queue.done(item)
    queue.add_rate_limited("ns/a")
    status = collect_status(client, "widgets", member_ttl=5.0)
    assert status["retrying"]["ns/a"]["failures"] == 1
    assert "ns/a: 1 failure(s)" in format_status(status)


def test_operator_groups_handlers_by_resource_and_rejects_bad_definitions() -> None:
    pods = Resource("", "v1", "pods")
    widgets = For(WIDGETS, kind="Widget")
    defined = Operator("widgets", operator.reconcile, widgets, owns=[widgets.owns(pods), Owns(
        pods, owner=WIDGETS, owner_kind="Widget")])
    assert list(defined.handlers_by_resource()) == [WIDGETS, pods]
    assert len(defined.handlers_by_resource()[pods]) == 2
    with pytest.raises(ConfigError, match="invalid controller name"):
        Operator("bad name", operator.reconcile, widgets)
    with pytest.raises(ConfigError, match="For"):
        Operator("widgets", operator.reconcile, Owns(pods, owner=WIDGETS, owner_kind="Widget"))  # type: ignore[arg-type]
