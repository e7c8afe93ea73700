"""Bad configuration ends ``shard-operator run`` within 5 s, exit code 2, one line on stderr, and no
process left behind: everything is checked and every socket bound before a worker is forked.

Each run uses a real redis-server and a kubeconfig that loads but points at an API server nobody
listens on: no case needs the API server, since start-up must fail before anything would talk to it,
while a run that got as far as forking (today's bug) would leave live workers to be found. Each run's
``--pod-name`` is a unique marker in the command line of the manager and of every forked child, so
``pgrep -f`` finds any survivor.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shard_operator.testing.process import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.redis

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}
users:
- name: nobody
  user: {token: not-a-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
"""


def unreachable_kubeconfig(folder: Path) -> Path:
    """A kubeconfig that loads (so start-up goes past it) for an API server that is not there."""
    path = folder / "kubeconfig"
    path.write_text(UNREACHABLE_KUBECONFIG)
    return path


def manager_command(marker: str, redis_url: str, kubeconfig: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shard_operator.cli", "run", "--app", "examples.widgets:operator",
            "--redis-url", redis_url, "--kubeconfig", str(kubeconfig), "--pod-name", marker,
            "--metrics-address", f"127.0.0.1:{free_port()}", *args]


def clean_environment() -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SHARD_OPERATOR_")}
    environ["PYTHONPATH"] = str(ROOT)
    return environ


def survivors(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique pod name; any process still carrying it at the end is killed (by pid) and reported."""
    name = f"badcfg-{uuid.uuid4().hex[:12]}"
    yield name
    for pid in survivors(name):
        os.kill(pid, signal.SIGKILL)


def run_to_exit(command: list[str], marker: str, limit: float = 5.0) -> tuple[int, str, float]:
    """Run the manager; (exit code, stderr, seconds). Fails, after killing its group, past ``limit``."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=clean_environment(), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"shard-operator run did not exit within {limit}s (survivors {survivors(marker)})")
    return process.returncode, stderr, time.monotonic() - started


def assert_exits_cleanly_with_one_line(command: list[str], marker: str, fragment: str) -> None:
    code, stderr, seconds = run_to_exit(command, marker)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("shard-operator: ") and fragment in lines[0], lines[0]
    assert seconds < 5.0
    assert survivors(marker) == [], "processes of the failed run are still alive"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--lease-duration", "5"], "--lease-duration (5s) must be longer than --renew-deadline (10s)"),
    (["--renew-deadline", "2", "--retry-period", "2"], "--renew-deadline (2s) must be longer than 1.2 x"),
    (["--heartbeat-interval", "nan"], "--heartbeat-interval must be a number of seconds from 0.05 to 600, got nan"),
    (["--claim-ttl", "inf"], "--claim-ttl must be a number of seconds from 1.5 to 86400, got inf"),
    (["--threads", "100000"], "--threads must be a whole number from 1 to 128, got 100000"),
], ids=["lease-duration-5", "renew-deadline-equals-retry-period", "heartbeat-nan", "claim-ttl-inf",
        "threads-100000"])
def test_a_bad_value_exits_2_with_one_line_and_leaves_no_process(args, fragment, marker, redis_url,
                                                                 tmp_path) -> None:
    command = manager_command(marker, redis_url, unreachable_kubeconfig(tmp_path), *args)
    assert_exits_cleanly_with_one_line(command, marker, fragment)


def test_a_busy_metrics_port_exits_2_with_one_line_and_leaves_no_process(marker, redis_url, tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        command = manager_command(marker, redis_url, unreachable_kubeconfig(tmp_path),
                                  "--metrics-address", f"127.0.0.1:{port}")
        assert_exits_cleanly_with_one_line(command, marker,
                                           f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_an_unreachable_redis_is_reported_without_its_password(marker, tmp_path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path)
    for url in (f"redis://operator:hunter2@127.0.0.1:{free_port()}/0",
                f"redis://127.0.0.1:{free_port()}/0?password=hunter2"):
        code, stderr, _ = run_to_exit(manager_command(marker, url, kubeconfig), marker)
        assert code == 2 and "cannot reach Redis at redis://" in stderr, stderr
        assert "hunter2" not in stderr and "***" in stderr, stderr
