"""Bad configuration ends ``shard-operator run`` with one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SHARD_OPERATOR_")}
    environ.update(PYTHONPATH=str(ROOT), SHARD_OPERATOR_METRICS_ADDRESS="0", **env)
    return subprocess.run([sys.executable, "-m", "shard_operator.cli", "run", *args], env=environ,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def assert_one_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("shard-operator: ") and fragment in lines[0], lines[0]


def test_unknown_app_is_a_config_error() -> None:
    assert_one_line(run("--app", "no_such_module:operator"), "cannot import no_such_module")


def test_unreachable_redis_is_a_config_error() -> None:
    assert_one_line(run("--app", "examples.widgets:operator", "--redis-url", "redis://127.0.0.1:9/0"),
                    "cannot reach Redis at redis://127.0.0.1:9/0")


def test_missing_kubeconfig_flag_is_a_config_error() -> None:
    assert_one_line(run("--app", "examples.widgets:operator", "--kubeconfig", "/no/such/kubeconfig"),
                    "kubeconfig /no/such/kubeconfig does not exist")


@pytest.mark.redis
def test_no_kubeconfig_anywhere_and_not_in_a_cluster_is_a_config_error(redis_url, tmp_path) -> None:
    result = run("--app", "examples.widgets:operator", "--redis-url", redis_url, HOME=str(tmp_path),
                 KUBECONFIG="")
    assert_one_line(result, "cannot load a Kubernetes configuration")
