"""The launchers start real servers on free ports and leave no process behind when stopped."""

from __future__ import annotations

import os

import pytest
import redis

from shard_operator.errors import BinaryNotFoundError, TestEnvError
from shard_operator.testing import ControlPlane, RedisServer


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped or a zombie.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.redis
class TestRedisServer:
    def test_the_server_accepts_a_connection_and_runs_a_lua_script(self, redis_url):
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.ping()
            script = client.register_script("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])")
            assert script(keys=["k"], args=["v"]) == b"v"
        finally:
            client.close()

    def test_config_directives_are_applied(self):
        with RedisServer({"maxmemory": "12mb", "maxmemory-policy": "noeviction"}) as server:
            client = redis.Redis.from_url(server.url)
            try:
                assert client.config_get("maxmemory")["maxmemory"] == str(12 * 1024 * 1024)
                assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
            finally:
                client.close()

    def test_stopping_leaves_no_process_and_removes_the_folder(self):
        server = RedisServer().start()
        pid, workdir = server.pid, server.workdir
        assert pid is not None and process_exists(pid)
        server.stop()
        assert not process_exists(pid)
        assert not workdir.exists()

    def test_a_missing_binary_is_reported_with_the_install_hint(self, monkeypatch):
        monkeypatch.setenv("SHARD_OPERATOR_REDIS_SERVER", "/nonexistent/redis-server")
        with pytest.raises(BinaryNotFoundError, match="does not exist"):
            RedisServer().start()

    def test_a_server_that_cannot_start_is_reported_with_its_log(self):
        with pytest.raises(TestEnvError, match="redis-server exited"):
            RedisServer({"no-such-directive": "1"}).start()


@pytest.mark.controlplane
class TestControlPlaneLauncher:
    def test_stopping_leaves_no_process_and_removes_the_folder(self):
        plane = ControlPlane().start()
        pids, workdir = plane.pids, plane.workdir
        assert set(pids) == {"etcd", "kube-apiserver"}
        assert all(process_exists(pid) for pid in pids.values())
        assert plane.get_raw("/readyz") == b"ok"
        plane.stop()
        assert not any(process_exists(pid) for pid in pids.values())
        assert not workdir.exists()

    def test_the_api_server_can_be_restarted_on_the_same_address(self, control_plane):
        url = control_plane.server_url
        control_plane.stop_apiserver()
        with pytest.raises(OSError):
            control_plane.get_raw("/readyz", timeout=1)
        control_plane.start_apiserver()
        assert control_plane.server_url == url
        assert control_plane.get_raw("/readyz") == b"ok"

    def test_binaries_are_taken_from_kubebuilder_assets_when_set(self, monkeypatch, tmp_path):
        monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
        fake = tmp_path / "etcd"
        fake.write_text("#!/bin/sh\necho fake etcd >&2\nexit 3\n")
        fake.chmod(0o755)
        with pytest.raises(TestEnvError, match="etcd exited with code 3"):
            ControlPlane(start_timeout=10).start()
