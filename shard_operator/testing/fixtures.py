"""pytest fixtures for the real test environment.

Enable them in a ``conftest.py`` with ``pytest_plugins = ["shard_operator.testing.fixtures"]``.

- ``redis_server`` (session): one redis-server for the whole run.
- ``redis_url`` (function): a URL of a database of that server, flushed before the test.
- ``control_plane`` (session): etcd + kube-apiserver, with ``kubeconfig`` and ``api_client()``, of the
  Kubernetes version given by ``pytest --kubernetes-version 1.37`` (else ``$SHARD_OPERATOR_KUBERNETES_VERSION``,
  else 1.34). The option sets that variable for the whole run, so control planes a test starts itself
  and the processes it runs use the same version.
- ``namespace`` (function): a fresh namespace on the control plane, deleted afterwards.
- ``operator_runner`` (function): starts :class:`~shard_operator.testing.OperatorRunner` s against those
  (``operator_runner("myoperator:operator")``), scoped to ``namespace``; all are stopped after the test.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shard_operator.errors import ConfigError
from shard_operator.testing.binaries import SUPPORTED_VERSIONS, VERSION_VARIABLE, kubernetes_version
from shard_operator.testing.controlplane import ControlPlane
from shard_operator.testing.redis_server import RedisServer
from shard_operator.testing.runner import OperatorRunner

__all__ = ["control_plane", "namespace", "operator_runner", "redis_server", "redis_url"]

_db_numbers = itertools.cycle(range(1, 16))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kubernetes-version", default=None, metavar="MINOR",
                     help=f"the Kubernetes version of the control plane ({', '.join(SUPPORTED_VERSIONS)}; "
                          f"default ${VERSION_VARIABLE}, else {SUPPORTED_VERSIONS[0]})")


def pytest_configure(config: pytest.Config) -> None:
    requested = config.getoption("kubernetes_version", default=None)
    if requested:
        try:
            os.environ[VERSION_VARIABLE] = kubernetes_version(requested)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from exc


def pytest_report_header(config: pytest.Config) -> str:
    return f"kubernetes version: {kubernetes_version()}"


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


@pytest.fixture
def operator_runner(control_plane: ControlPlane, redis_url: str, namespace: str,
                    tmp_path: Path) -> Iterator[Callable[..., OperatorRunner]]:
    """Start ``shard-operator run --app APP`` for this test's namespace and Redis database; keyword
    arguments go to :class:`OperatorRunner` (``pod=``, ``workers=``, ``settings=``). The runners are
    started (not waited for) and stopped with SIGTERM after the test; their logs stay in ``tmp_path``."""
    started: list[OperatorRunner] = []

    def start(app: str, **options: Any) -> OperatorRunner:
        options = {"kubeconfig": control_plane.kubeconfig, "redis_url": redis_url, "namespace": namespace,
                   "log_dir": tmp_path, **options}
        runner = OperatorRunner(app, **options)
        started.append(runner)
        return runner.start()

    yield start
    for runner in started:
        runner.stop()
