"""The launchers start real servers on free ports and leave no process behind when stopped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from shard_operator.errors import BinaryNotFoundError, ConfigError, TestEnvError
from shard_operator.testing import ControlPlane, RedisServer
from shard_operator.testing.binaries import (
    VERSION_VARIABLE,
    controlplane_binary,
    controlplane_source,
    kubernetes_version,
    user_cache_bin_dir,
)
from shard_operator.testing.certs import write_certs


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
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
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
            # KUBEBUILDER_ASSETS holds binaries of the default version only: ask for it, whatever the run's is.
            ControlPlane(start_timeout=10, kubernetes_version="1.34").start()


class TestLauncherFlags:
    def test_extra_api_server_flags_come_after_the_defaults_so_they_win(self, tmp_path):
        plane = ControlPlane(workdir=tmp_path, apiserver_flags=["--max-requests-inflight=5"])
        plane._certs = write_certs(tmp_path / "pki")
        argv = plane.apiserver_argv()
        assert argv[-1] == "--max-requests-inflight=5"
        assert "--enable-priority-and-fairness=false" in argv  # else max-requests-inflight is ignored

    def test_the_controller_manager_runs_the_garbage_collector_and_namespace_controller_as_the_admin(
            self, tmp_path, monkeypatch):
        monkeypatch.setenv("SHARD_OPERATOR_CONTROLPLANE_BIN", str(tmp_path))
        binary = tmp_path / "kube-controller-manager"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        argv = ControlPlane(workdir=tmp_path).controller_manager_argv()
        assert "--controllers=garbagecollector,namespace,statefulset" in argv
        assert {"--leader-elect=false", "--use-service-account-credentials=false",
                f"--kubeconfig={tmp_path / 'kubeconfig'}"} <= set(argv)


class TestBinaryLookup:
    def test_the_user_cache_is_searched_after_the_variables(self, tmp_path, monkeypatch):
        for variable in ("KUBEBUILDER_ASSETS", "SHARD_OPERATOR_CONTROLPLANE_BIN"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.setattr("shard_operator.testing.binaries.source_checkout_bin_dir", lambda version=None: None)
        cached = user_cache_bin_dir() / "kube-apiserver"
        cached.parent.mkdir(parents=True)
        cached.write_text("#!/bin/sh\n")
        cached.chmod(0o755)
        assert controlplane_binary("kube-apiserver") == cached
        explicit = tmp_path / "explicit"
        explicit.mkdir()
        (explicit / "kube-apiserver").write_text("#!/bin/sh\n")
        (explicit / "kube-apiserver").chmod(0o755)
        monkeypatch.setenv("SHARD_OPERATOR_CONTROLPLANE_BIN", str(explicit))
        assert controlplane_binary("kube-apiserver") == explicit / "kube-apiserver"

    def test_a_missing_binary_names_only_commands_a_pip_user_has(self, tmp_path, monkeypatch):
        for variable in ("KUBEBUILDER_ASSETS", "SHARD_OPERATOR_CONTROLPLANE_BIN"):
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.setattr("shard_operator.testing.binaries.source_checkout_bin_dir", lambda version=None: None)
        with pytest.raises(BinaryNotFoundError) as info:
            controlplane_binary("kube-controller-manager")
        message = str(info.value)
        assert "shard-operator testenv build" in message and "KUBEBUILDER_ASSETS" in message
        assert "make" not in message and "tools/controlplane" not in message
        assert str(user_cache_bin_dir()) in message

    def test_the_go_module_ships_inside_the_package(self):
        source = controlplane_source()
        assert {"go.mod", "go.sum", "build.sh"} <= {path.name for path in source.iterdir()}
        assert {path.parent.name for path in source.glob("cmd/*/main.go")} == \
            {"etcd", "kube-apiserver", "kube-controller-manager"}

    def test_building_without_go_fails_with_one_line_naming_what_to_install(self, tmp_path):
        environ = {**os.environ, "PATH": str(tmp_path)}
        result = subprocess.run([sys.executable, "-m", "shard_operator.cli", "testenv", "build",
                                 "--dest", str(tmp_path / "bin")], env=environ, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Go is not installed" in lines[0], result.stderr


class TestKubernetesVersions:
    def test_a_version_is_named_by_its_minor_and_defaults_to_the_variable_then_1_34(self, monkeypatch):
        monkeypatch.delenv(VERSION_VARIABLE, raising=False)
        assert kubernetes_version() == "1.34"
        assert {kubernetes_version(name) for name in ("1.37", "v1.37", "1.37.2")} == {"1.37"}
        monkeypatch.setenv(VERSION_VARIABLE, "1.37")
        assert kubernetes_version() == "1.37" and kubernetes_version("1.34") == "1.34"

    def test_an_unsupported_version_is_refused_naming_the_supported_ones(self, monkeypatch):
        monkeypatch.setenv(VERSION_VARIABLE, "1.30")
        with pytest.raises(ConfigError, match=r"'1.30' \(from \$SHARD_OPERATOR_KUBERNETES_VERSION\).*1.34, 1.37"):
            kubernetes_version()
        with pytest.raises(ConfigError, match=r"1\.34, 1\.37"):
            ControlPlane(kubernetes_version="1.x")

    def test_from_1_36_on_the_api_server_runs_with_sharded_list_and_watch(self, tmp_path, monkeypatch):
        for variable in ("SHARD_OPERATOR_CONTROLPLANE_BIN", "SHARD_OPERATOR_CONTROLPLANE_BIN_1_37"):
            monkeypatch.setenv(variable, str(tmp_path))
        (tmp_path / "kube-apiserver").write_text("#!/bin/sh\n")
        (tmp_path / "kube-apiserver").chmod(0o755)
        certs = write_certs(tmp_path / "pki")
        gate = "--feature-gates=ShardedListAndWatch=true"
        for version, sharded in (("1.34", False), ("1.37", True)):
            plane = ControlPlane(workdir=tmp_path, kubernetes_version=version)
            plane._certs = certs
            assert plane.sharded_list_and_watch is sharded
            assert (gate in plane.apiserver_argv()) is sharded

    def test_another_version_is_never_taken_from_path_or_kubebuilder_assets(self, tmp_path, monkeypatch):
        monkeypatch.delenv("SHARD_OPERATOR_CONTROLPLANE_BIN_1_37", raising=False)
        unknown = tmp_path / "unknown"
        unknown.mkdir()
        (unknown / "kube-apiserver").write_text("#!/bin/sh\n")
        (unknown / "kube-apiserver").chmod(0o755)
        monkeypatch.setenv("KUBEBUILDER_ASSETS", str(unknown))
        monkeypatch.setenv("PATH", str(unknown))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setattr("shard_operator.testing.binaries.source_checkout_bin_dir", lambda version=None: None)
        with pytest.raises(BinaryNotFoundError, match=r"testenv --kubernetes-version 1\.37 build") as info:
            controlplane_binary("kube-apiserver", "1.37")
        assert str(user_cache_bin_dir("1.37")) in str(info.value) and "controlplane-1.37" in str(info.value)
        cached = user_cache_bin_dir("1.37") / "kube-apiserver"
        cached.parent.mkdir(parents=True)
        cached.write_text("#!/bin/sh\n")
        cached.chmod(0o755)
        assert controlplane_binary("kube-apiserver", "1.37") == cached

    def test_the_go_module_pins_each_supported_version_and_ships_it(self):
        source = controlplane_source()
        for version, files in (("1.34", ("go.mod", "go.sum")), ("1.37", ("go.1.37.mod", "go.1.37.sum"))):
            assert all((source / name).is_file() for name in files)
            assert f"k8s.io/kubernetes v{version}." in (source / files[0]).read_text()
        pyproject = (source.parents[2] / "pyproject.toml").read_text()
        assert '"go.*.mod", "go.*.sum"' in pyproject

    @pytest.mark.controlplane
    def test_binaries_of_another_version_than_asked_for_are_refused_once_the_server_answers(self, monkeypatch):
        try:
            newer = controlplane_binary("kube-apiserver", "1.37").parent
        except BinaryNotFoundError:
            pytest.skip("the 1.37 binaries are not built (make controlplane)")
        monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
        monkeypatch.setenv("SHARD_OPERATOR_CONTROLPLANE_BIN", str(newer))
        with pytest.raises(TestEnvError, match=r"asked for Kubernetes 1.34, but .*kube-apiserver is v1.37"):
            ControlPlane(kubernetes_version="1.34", controllers=()).start()
