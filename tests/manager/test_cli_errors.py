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


# -- the rest of the command line ---------------------------------------------------------------------------------

def cli(*args: str, cwd: Path = ROOT, pythonpath: str = str(ROOT), **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SHARD_OPERATOR_")}
    environ.update(PYTHONPATH=pythonpath, SHARD_OPERATOR_METRICS_ADDRESS="0", **env)
    return subprocess.run([sys.executable, "-m", "shard_operator.cli", *args], env=environ,
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"shard-operator {version('shard-operator')}"


def test_an_app_module_with_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("import shard_operator\n\noperator = (\n")
    result = run_in(tmp_path, "--app", "broken_app:operator")
    assert_one_line(result, f"{tmp_path / 'broken_app.py'} line 3")
    assert "SyntaxError" in result.stderr


def test_an_import_error_inside_the_app_module_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "needs_dep.py").write_text("import os\nimport no_such_dependency_xyz\n")
    result = run_in(tmp_path, "--app", "needs_dep:operator")
    assert_one_line(result, f"{tmp_path / 'needs_dep.py'} line 2")
    assert "no_such_dependency_xyz" in result.stderr


def test_an_exception_raised_while_importing_the_app_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "raising_app.py").write_text("x = 1\ny = undefined_name\n")
    result = run_in(tmp_path, "--app", "raising_app:operator")
    assert_one_line(result, f"{tmp_path / 'raising_app.py'} line 2: NameError")


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("run", *args, pythonpath=f"{ROOT}{os.pathsep}{folder}")


def test_an_unknown_log_format_is_a_config_error() -> None:
    assert_one_line(run("--app", "examples.widgets:operator", "--log-format", "xml"), "--log-format 'xml'")


HELP_PAGES = [(), ("run",), ("status",), ("testenv",), ("testenv", "build"), ("testenv", "up"),
              ("testenv", "env")]


@pytest.mark.parametrize("command", HELP_PAGES, ids=lambda c: " ".join(c) or "main")
def test_help_text_has_no_rst_markup_and_no_default_none(command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout and ":class:" not in result.stdout
    assert "default None" not in result.stdout and "default: None" not in result.stdout


def test_help_into_a_closed_pipe_prints_no_traceback() -> None:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-m", "shard_operator.cli", "run", "--help"], env=environ,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| head -0`: the reader is gone before the first write
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == ""


@pytest.mark.controlplane
@pytest.mark.redis
class TestStatus:
    def test_an_unknown_controller_exits_non_zero_with_one_line(self, control_plane, redis_url) -> None:
        result = cli("status", "--controller", "nosuch", "--redis-url", redis_url,
                     "--kubeconfig", str(control_plane.kubeconfig))
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "no controller 'nosuch'" in lines[0], result.stderr
        assert result.stdout == ""

    def test_an_unknown_controller_is_reported_without_the_redis_password(self, control_plane, redis_url) -> None:
        # the test Redis has no password, so its default user takes any: the URL works and only the message shows it
        secret_url = redis_url.replace("redis://", "redis://default:hunter2@", 1)
        result = cli("status", "--controller", "nosuch", "--redis-url", secret_url,
                     "--kubeconfig", str(control_plane.kubeconfig))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no controller 'nosuch'" in result.stderr, result.stderr
        assert "hunter2" not in result.stderr and "redis://default:***@" in result.stderr, result.stderr

    def test_status_into_a_closed_pipe_prints_no_traceback(self, control_plane, redis_url) -> None:
        import redis

        from shard_operator.keys import Keys

        client = redis.Redis.from_url(redis_url)
        client.set(Keys.for_controller("piped").epoch, 3)
        client.close()
        environ = {key: value for key, value in os.environ.items() if not key.startswith("SHARD_OPERATOR_")}
        environ["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-m", "shard_operator.cli", "status", "--controller", "piped",
                "--redis-url", redis_url, "--kubeconfig", str(control_plane.kubeconfig)]
        shell = f"{' '.join(argv)} | head -1"
        result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], env=environ, capture_output=True,
                                text=True, timeout=60, cwd=ROOT)
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
        assert len(result.stdout.splitlines()) == 1
        assert result.returncode in (0, 141)
