"""A 30-second run of the load lab against the real control plane and Redis: 100 objects, updates,
one worker SIGKILLed; the run must end with every change converged and the invariants clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.cli import main
from shard_operator.testing import ControlPlane

pytestmark = [pytest.mark.slow, pytest.mark.controlplane, pytest.mark.redis]

pytest.importorskip("matplotlib", reason="the report's plots need the 'loadtest' extra: pip install -e '.[loadtest]'")

# Latency on a shared 2-core test machine says little; the smoke run gates the invariants.
LENIENT_SLO = "overlaps: 0\nlost: 0\nunconverged: 0\nbackoff_violations: 0\nrecovery_s: 60\n"


def test_a_steady_run_with_a_killed_worker_converges_with_no_overlap_and_no_lost_update(
        control_plane: ControlPlane, redis_url: str, tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text(LENIENT_SLO)
    code = main(["steady", "--objects", "100", "--rate", "5", "--duration", "20", "--fault", "kill-worker:8",
                 "--kubeconfig", str(control_plane.kubeconfig), "--redis-url", redis_url, "--slo", str(slo),
                 "--out", str(tmp_path), "--no-progress", "--timeout", "120"])
    [folder] = [p.parent for p in tmp_path.glob("*/results.json")]
    results = json.loads((folder / "results.json").read_text())
    assert code == 0, (folder / "report.md").read_text()
    checker = results["checker"]
    assert checker["recorded"] and checker["records"] > 100
    assert checker["overlaps"] == [] and checker["lost"] == []
    assert results["latency"]["changes"] >= 150 and results["latency"]["unconverged"] == 0
    killed = [f for f in results["faults"] if f["name"] == "kill-worker"]
    assert len(killed) == 2 and all("SIGKILL worker" in f["detail"] for f in killed)
    assert all(f["recovery_s"] is not None for f in killed)
    assert results["api_requests"]["operator_by_verb"].get("PATCH/status", 0) > 0
    assert results["figures"]["all_deleted"] is True
    for plot in ("latency.png", "queue.png", "throughput.png", "resources.png"):
        assert (folder / plot).stat().st_size > 1000
