"""The health endpoints, the coordinator's duties and the status summary, without a cluster."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from examples.widgets import WIDGETS, operator
from shard_operator.errors import ConfigError
from shard_operator.handler import For, Owns
from shard_operator.keys import Keys
from shard_operator.manager import Coordinator, HealthServer
from shard_operator.manager.status import collect_status, errors_key, format_status
from shard_operator.operator import Operator
from shard_operator.queue import RateLimitingQueue
from shard_operator.sharding import Membership
from shard_operator.source import Resource
from shard_operator.testing.redis_server import RedisServer
from tests.faults.test_bad_configuration import ROOT, clean_environment, manager_command, unreachable_kubeconfig
from tests.waiting import eventually


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


def test_300_idle_connections_cost_no_thread_and_healthz_still_answers_at_once() -> None:
    server = HealthServer("127.0.0.1", 0, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok")).start()
    idle: list[socket.socket] = []
    try:
        threads = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        idle[0].sendall(b"GET /healthz HTTP/1.1\r\n")  # and a slow one that never finishes its head
        time.sleep(0.5)  # time for the server to accept them all
        assert threading.active_count() <= threads
        started = time.monotonic()
        assert fetch(server.port, "/healthz") == (200, "ok")
        assert fetch(server.port, "/readyz") == (200, "ok")
        assert time.monotonic() - started < 1.0
        assert threading.active_count() <= threads
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_a_connection_that_sends_no_complete_request_is_closed_after_the_idle_timeout() -> None:
    server = HealthServer("127.0.0.1", 0, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok"),
                          idle_timeout=0.3).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            slow.sendall(b"GET /hea")
            slow.settimeout(5)
            started = time.monotonic()
            assert slow.recv(100) == b""  # closed by the server, unanswered
            assert time.monotonic() - started < 3
    finally:
        server.stop()


def test_the_listening_socket_is_bound_at_construction_so_a_busy_port_fails_before_start() -> None:
    first = HealthServer("127.0.0.1", 0, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok"))
    try:
        with pytest.raises(OSError):
            HealthServer("127.0.0.1", first.port, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok"))
    finally:
        first.close()


def _set_and_sleep(running: Any) -> None:
    running.set()
    time.sleep(30)


def test_a_forked_child_does_not_keep_the_health_port_bound() -> None:
    server = HealthServer("127.0.0.1", 0, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok"))
    port = server.port
    context = multiprocessing.get_context("fork")
    running = context.Event()
    with warnings.catch_warnings():  # Python 3.12 warns about fork() in a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        child = context.Process(target=_set_and_sleep, args=(running,))
        child.start()
    try:
        assert running.wait(10)  # the child is past the fork hooks
        server.close()
        # Binding fails with "Address already in use" while the child still holds the listening socket.
        HealthServer("127.0.0.1", port, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok")).close()
    finally:
        child.kill()
        child.join()


@pytest.fixture
def paused_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: pausing it must not stall other tests' server."""
    with RedisServer() as server:
        yield server


@pytest.mark.redis
@pytest.mark.slow
def test_readyz_answers_within_a_second_and_redis_up_reads_0_while_redis_is_paused(paused_redis, tmp_path) -> None:
    url = paused_redis.url
    pod = f"ready-{os.getpid()}"
    admin = redis.Redis.from_url(url)
    admin.rpush(Keys.for_controller("widgets").ring, f"{pod}-w0")  # what the leader's coordinator publishes
    command = manager_command(pod, url, unreachable_kubeconfig(tmp_path), "--lease-duration", "3",
                              "--renew-deadline", "2", "--retry-period", "0.5", "--log-level", "ERROR")
    port = int(command[command.index("--metrics-address") + 1].rpartition(":")[2])
    manager = subprocess.Popen(command, env=clean_environment(), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)

    def readyz() -> tuple[int, str, float]:
        started = time.monotonic()
        try:
            status, body = fetch(port, "/readyz")
        except OSError:
            status, body = 0, "down"
        return status, body, time.monotonic() - started

    try:
        eventually(lambda: readyz()[0] == 200, timeout=60, what="the manager to be ready")
        assert 'shard_operator_redis_up{controller="widgets"} 1.0' in fetch(port, "/metrics")[1]
        admin.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        answers = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            answers.append(readyz())
            time.sleep(0.2)
        assert max(seconds for _, _, seconds in answers) < 1.0, answers
        assert (503, "Redis does not answer: Timeout reading from socket") in [a[:2] for a in answers], answers
        assert 'shard_operator_redis_up{controller="widgets"} 0.0' in fetch(port, "/metrics")[1]
        eventually(lambda: readyz()[0] == 200, timeout=10, what="ready again once Redis answers")
    finally:
        manager.send_signal(signal.SIGTERM)
        try:
            manager.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(manager.pid, signal.SIGKILL)
            manager.wait()
        admin.close()


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
    assert status["retrying"]["ns/a"]["last_error"] is None


def test_status_shows_the_last_error_of_each_retrying_key(client) -> None:
    keys = Keys.for_controller("widgets")
    queue = RateLimitingQueue(client, keys, bucket=None)
    queue.add_rate_limited("ns/a")
    queue.add_rate_limited("ns/b")
    assert errors_key(keys) == "so:{widgets}:errors"
    client.hset(errors_key(keys), mapping={"ns/a": "ValueError: replicas must be >= 0",
                                           "ns/b": "RuntimeError: " + "x" * 400,
                                           "ns/gone": "KeyError: 'done long ago'"})
    status = collect_status(client, "widgets", member_ttl=5.0)
    assert status["retrying"]["ns/a"]["last_error"] == "ValueError: replicas must be >= 0"
    assert len(status["retrying"]["ns/b"]["last_error"]) == 300
    assert "ns/gone" not in status["retrying"]  # not retrying: its old error is not shown
    text = format_status(status)
    assert "ns/a: 1 failure(s), due in " in text and "; last error: ValueError: replicas must be >= 0" in text


@pytest.mark.redis
def test_status_counts_due_times_on_the_redis_clock_not_on_this_hosts(redis_url, monkeypatch) -> None:
    real = redis.Redis.from_url(redis_url)
    keys = Keys.for_controller("skewed")
    RateLimitingQueue(real, keys, bucket=None).add_after("ns/later", 60)
    host_time = time.time
    monkeypatch.setattr(time, "time", lambda: host_time() + 3600)  # this host's clock is an hour ahead
    try:
        due_in = collect_status(real, "skewed", member_ttl=5.0)["retrying"]["ns/later"]["due_in"]
    finally:
        real.close()
    assert 55 <= due_in <= 60


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
