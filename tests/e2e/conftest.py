"""Fixtures of the end-to-end suite: the Widget CRD, a counted admin client, and manager subprocesses
(:class:`~shard_operator.testing.OperatorRunner`, one per simulated pod)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from examples.widgets import install_crd
from shard_operator.client import Client, RequestCounter
from shard_operator.testing import ControlPlane, OperatorRunner
from tests.e2e.observed import ROOT


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
def start_manager(widgets_api: Any, operator_runner: Callable[..., OperatorRunner]) -> Callable[..., OperatorRunner]:
    """Start a manager subprocess (two workers) for this test's namespace and Redis database, as pod
    ``pod``; ``settings`` are ``SHARD_OPERATOR_*`` options without the prefix. All are stopped after."""

    def start(pod: str, app: str = "examples.widgets:operator", **settings: str) -> OperatorRunner:
        return operator_runner(app, pod=pod, workers=2, settings=settings, cwd=ROOT)

    return start
