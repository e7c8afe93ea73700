"""toxiproxy, built from its Go module, between a client and a real redis-server: latency and refused
connections are what the lab's network faults rely on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from loadtest.toxiproxy import Toxiproxy
from shard_operator.testing import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_a_latency_toxic_slows_every_answer_and_a_disabled_proxy_refuses_connections(
        redis_server: RedisServer, tmp_path: Path) -> None:
    with Toxiproxy(tmp_path / "toxiproxy.log") as proxy:
        listen = proxy.create("redis", f"127.0.0.1:{redis_server.port}")
        host, port = listen.split(":")
        client = redis.Redis(host=host, port=int(port), socket_timeout=5)
        assert client.ping()
        toxic = proxy.add_toxic("redis", "latency", latency=300)
        started = time.monotonic()
        client.ping()
        assert time.monotonic() - started >= 0.3
        proxy.remove_toxic("redis", toxic)
        started = time.monotonic()
        client.ping()
        assert time.monotonic() - started < 0.3
        proxy.set_enabled("redis", False)
        client.close()
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host=host, port=int(port), socket_timeout=2).ping()
        proxy.set_enabled("redis", True)
        assert redis.Redis(host=host, port=int(port), socket_timeout=5).ping()
