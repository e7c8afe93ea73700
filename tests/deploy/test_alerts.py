"""The alerting rules checked by a real promtool: the rule file is valid, every alert has a unit test
that fires it (tests/deploy/alerts_test.yml), and every alert has a runbook section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from shard_operator.manifests.alerts import ALERTS
from tests.tools import tool_missing

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "rules.yml"
TESTS = Path(__file__).with_name("alerts_test.yml")


def promtool() -> str:
    """promtool from $SHARD_OPERATOR_PROMETHEUS_BIN, tools/prometheus/bin (tools/prometheus/build.sh), or PATH."""
    for folder in (os.environ.get("SHARD_OPERATOR_PROMETHEUS_BIN"), ROOT / "tools" / "prometheus" / "bin"):
        if folder and (Path(folder) / "promtool").is_file():
            return str(Path(folder) / "promtool")
    found = shutil.which("promtool")
    if found is None:
        tool_missing("promtool is not built: run tools/prometheus/build.sh (Go >= 1.24; it builds prometheus and "
                    "promtool from the Prometheus Go module into tools/prometheus/bin)")
    return found


def test_every_alert_has_severity_summary_description_and_a_runbook_section():
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = {heading.strip().lower() for heading in re.findall(r"^## (.+)$", runbook, re.M)}
    for alert in ALERTS:
        rule = alert.rule()
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert alert.name.lower() in sections, f"docs/runbook.md has no '## {alert.name}' section"


def test_every_alert_has_a_promtool_unit_test():
    tested = {case["alertname"] for test in yaml.safe_load(TESTS.read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {alert.name for alert in ALERTS}


def test_promtool_accepts_the_rule_file():
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_every_alert_fires_as_its_promtool_unit_test_expects():
    tested = subprocess.run([promtool(), "test", "rules", str(TESTS)], capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
