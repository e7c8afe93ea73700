"""Fixtures of the end-to-end suite: the Widget CRD, a counted admin client, and manager subprocesses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.widgets import install_crd
from shard_operator.client import Client, RequestCounter
from shard_operator.testing import ControlPlane
from tests.e2e.harness import ManagerProcess


@pytest.fixture(scope="session")
def widgets_api(control_plane: ControlPlane) -> Iterator[Any]:
    with control_plane.api_client() as api:
        install_crd(api)
        yield api


@pytest.fixture
def kube(widgets_api: Any) -> Client:
    """The test's own client (as a user of the cluster would write), with its own request counter."""
    return Client(widgets_api, counter=RequestCounter(), field_manager="e2e-tests")


@pytest.fixture
def start_manager(control_plane: ControlPlane, widgets_api: Any, redis_url: str, namespace: str,
                  tmp_path: Path) -> Iterator[Callable[..., ManagerProcess]]:
    """Start a manager subprocess for this test's namespace and Redis database; all are stopped after."""
    started: list[ManagerProcess] = []

    def start(pod: str, app: str = "examples.widgets:operator", **env: str) -> ManagerProcess:
        manager = ManagerProcess(pod, app=app, kubeconfig=control_plane.kubeconfig, redis_url=redis_url,
                                 namespace=namespace, log_dir=tmp_path, **env)
        started.append(manager.start())
        return manager

    yield start
    for manager in started:
        manager.close()
