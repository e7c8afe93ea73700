"""The lab driving an operator it knows only as a black box (``--operator-cmd``, a CRD file and
"converged"): the example Widget operator, a small burst on the real control plane and Redis. Every
object must converge and none may be lost; reconciles are not recorded, so I1/I3/I4 are not judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import suite
from loadtest.cli import main
from shard_operator.testing import ControlPlane

pytestmark = [pytest.mark.slow, pytest.mark.controlplane, pytest.mark.redis]

pytest.importorskip("matplotlib", reason="the report's plots need the 'loadtest' extra: pip install -e '.[loadtest]'")

LENIENT_SLO = "lost: 0\nunconverged: 0\n"


def test_a_black_box_operator_given_by_its_command_and_crd_converges_a_burst_with_nothing_lost(
        control_plane: ControlPlane, redis_url: str, tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text(LENIENT_SLO)
    crd = suite.write_widget_crd(tmp_path)
    code = main(["burst", "--objects", "20", "--duration", "2", "--operator-cmd", suite.BLACK_BOX,
                 "--crd", str(crd), "--kubeconfig", str(control_plane.kubeconfig), "--redis-url", redis_url,
                 "--slo", str(slo), "--out", str(tmp_path / "out"), "--no-progress", "--timeout", "90"])
    [folder] = [p.parent for p in (tmp_path / "out").glob("*/results.json")]
    results = json.loads((folder / "results.json").read_text())
    assert code == 0, (folder / "report.md").read_text()
    assert results["checker"]["recorded"] is False and results["checker"]["lost"] == []
    assert results["latency"]["changes"] == 20 and results["latency"]["unconverged"] == 0
    assert results["latency"]["p99_s"] is not None
    assert results["figures"]["all_deleted"] is True
    assert results["api_requests"]["operator_by_verb"].get("PATCH/status", 0) > 0
