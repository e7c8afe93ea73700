"""The KWOK scenario, short: a Pod-watching operator with server-side label and field selectors over 3
fake nodes and 100 pods converges every matching pod and never reconciles the others."""

from __future__ import annotations

import pytest

from loadtest.kwok import TOOLS
from loadtest.kwokscenario import run
from shard_operator.testing import ControlPlane

pytestmark = [pytest.mark.slow, pytest.mark.controlplane, pytest.mark.redis]

if not (TOOLS / "bin" / "kwok").exists() or not (TOOLS / "bin" / "stages.yaml").exists():
    pytest.skip("KWOK is not built: run tools/kwok/build.sh (a Go build of sigs.k8s.io/kwok)",
                allow_module_level=True)


def test_a_pod_watching_operator_marks_every_matching_pod_and_never_reconciles_the_others(
        control_plane: ControlPlane, redis_url: str) -> None:
    result = run(nodes=3, pods=100, workers=2, timeout=120, plane=control_plane, redis_url=redis_url)
    assert result["converged"] is True, result
    assert result["matching"] == 50 and result["marked"] == 50
    assert result["reconciled_outside_count"] == 0, result["reconciled_outside_selectors"]
    assert result["clean"] is True, result["verdict"]
    assert result["verdict"]["lost"] == [] and result["verdict"]["overlaps"] == []
    # The selectors run on the server: the operator lists pods a few times (its first list, and a relist
    # when a watch breaks on a busy machine, as the test's own watcher may too), never once per pod.
    assert result["apiserver_pod_requests"].get("LIST", 0) <= 10
    assert result["apiserver_pod_requests"].get("PATCH", 0) >= 50
