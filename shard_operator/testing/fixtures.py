"""pytest fixtures for the real test environment.

Enable them in a ``conftest.py`` with ``pytest_plugins = ["shard_operator.testing.fixtures"]``.

- ``redis_server`` (session): one redis-server for the whole run.
- ``redis_url`` (function): a URL of a database of that server, flushed before the test.
- ``control_plane`` (session): etcd + kube-apiserver, with ``kubeconfig`` and ``api_client()``.
- ``namespace`` (function): a fresh namespace on the control plane, deleted afterwards.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
import redis

from shard_operator.testing.controlplane import ControlPlane
from shard_operator.testing.redis_server import RedisServer

__all__ = ["control_plane", "namespace", "redis_server", "redis_url"]

_db_numbers = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A database of the session's redis-server, empty at the start of the test."""
    url = redis_server.url_for_db(next(_db_numbers))
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        yield plane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace that exists for this test only."""
    from kubernetes import client

    name = f"test-{uuid.uuid4().hex[:10]}"
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield name
        core.delete_namespace(name)
