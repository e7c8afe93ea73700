"""``shard-operator testenv`` brings the embedded environment up, reports it, and takes it down."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from kubernetes import client, config

pytestmark = [pytest.mark.controlplane, pytest.mark.redis]


def shard_operator(*args: str, state_dir) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARD_OPERATOR_TESTENV_DIR": str(state_dir)}
    return subprocess.run([sys.executable, "-m", "shard_operator.cli", *args], env=env, capture_output=True,
                          text=True, timeout=180)


def test_testenv_up_prints_a_working_kubeconfig_and_redis_url_and_down_stops_everything(tmp_path):
    state_dir = tmp_path / "env"
    up = shard_operator("testenv", "up", state_dir=state_dir)
    assert up.returncode == 0, up.stderr
    values = dict(line.split("=", 1) for line in up.stdout.splitlines())
    assert set(values) == {"KUBECONFIG", "REDIS_URL", "SHARD_OPERATOR_REDIS_URL"}
    assert values["SHARD_OPERATOR_REDIS_URL"] == values["REDIS_URL"]
    try:
        with config.new_client_from_config(config_file=values["KUBECONFIG"]) as api:
            assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
        r = redis.Redis.from_url(values["REDIS_URL"])
        assert r.ping()
        r.close()
        again = shard_operator("testenv", "up", state_dir=state_dir)
        assert again.returncode == 0 and "already running" in again.stderr
        assert again.stdout == up.stdout
        env = shard_operator("testenv", "env", "--export", state_dir=state_dir)
        assert env.stdout.splitlines() == [f"export {line}" for line in up.stdout.splitlines()]
    finally:
        down = shard_operator("testenv", "down", state_dir=state_dir)
    assert down.returncode == 0
    assert not state_dir.exists()
    status = shard_operator("testenv", "status", state_dir=state_dir)
    assert status.returncode == 1 and "not running" in status.stderr
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(values["REDIS_URL"], socket_connect_timeout=1).ping()


def test_env_without_a_running_environment_fails_with_one_line(tmp_path):
    result = shard_operator("testenv", "env", state_dir=tmp_path / "none")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_unsupported_kubernetes_version_fails_with_one_line_naming_the_supported_ones(tmp_path):
    result = subprocess.run([sys.executable, "-m", "shard_operator.cli", "testenv", "--dir", str(tmp_path),
                             "--kubernetes-version", "1.35", "up"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported Kubernetes version '1.35'" in lines[0] and "1.34, 1.37" in lines[0]


def test_up_reuses_the_running_environment_unless_another_version_is_asked_for(tmp_path, monkeypatch):
    from shard_operator.errors import TestEnvError
    from shard_operator.testing.testenv import TestEnvState, testenv_up

    running = TestEnvState(kubeconfig="k", redis_url="r", server_url="s", pids={"etcd": os.getpid()},
                           kubernetes_version="1.34")
    running.save(tmp_path)
    monkeypatch.delenv("SHARD_OPERATOR_KUBERNETES_VERSION", raising=False)
    assert testenv_up(tmp_path, "1.34") == (running, False)
    assert testenv_up(tmp_path) == (running, False)
    with pytest.raises(TestEnvError, match=r"runs Kubernetes 1\.34, not 1\.37.*testenv down"):
        testenv_up(tmp_path, "1.37")
    monkeypatch.setenv("SHARD_OPERATOR_KUBERNETES_VERSION", "1.37")
    with pytest.raises(TestEnvError, match=r"not 1\.37"):
        testenv_up(tmp_path)
