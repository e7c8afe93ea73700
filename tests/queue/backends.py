"""Storage backends every queue and ring test runs against: fakeredis and the real redis-server.

``connect`` is a factory of clients of one fresh database, so a test can build several queue
instances (as several processes would) on the same data. Import it into a ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from shard_operator.keys import Keys
from shard_operator.queue import ManualClock
from shard_operator.sharding import Assigner, Membership

Connect = Callable[[], redis.Redis]


@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.redis)])
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    clients: list[redis.Redis] = []
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()

        def make() -> redis.Redis:
            clients.append(fakeredis.FakeRedis(server=server))
            return clients[-1]
    else:
        url = request.getfixturevalue("redis_url")

        def make() -> redis.Redis:
            clients.append(redis.Redis.from_url(url))
            return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(connect: Connect) -> redis.Redis:
    return connect()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keys() -> Keys:
    return Keys.for_controller("widgets")


def publish_ring(client: redis.Redis, keys: Keys, clock: ManualClock | None, *shards: str) -> int:
    """Make ``shards`` the live members and the ring; returns how many queued keys moved."""
    client.delete(keys.members)
    for shard in shards:
        Membership(client, keys, shard, clock=clock).heartbeat()
    return Assigner(client, keys, clock=clock).rebalance().moved
