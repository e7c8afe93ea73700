"""Fixtures of the leader-election tests (see :mod:`tests.leaderelection.helpers`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shard_operator.testing.controlplane import ControlPlane
from tests.leaderelection.helpers import Electors


@pytest.fixture
def electors(control_plane: ControlPlane, namespace: str) -> Iterator[Electors]:
    made = Electors(control_plane, namespace)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def leases(control_plane: ControlPlane) -> Iterator[Any]:
    """A CoordinationV1Api as admin, for reading and tampering with the Lease."""
    from kubernetes import client

    with control_plane.api_client() as api:
        yield client.CoordinationV1Api(api)
