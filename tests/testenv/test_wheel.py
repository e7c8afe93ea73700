"""What a pip user gets: the wheel, installed into a fresh virtual environment, builds the test control
plane with ``shard-operator testenv build``, starts and stops it with ``testenv up`` / ``down``, and runs the
README's ``FakeContext`` and ``OperatorRunner`` examples from a folder outside this checkout.

Nothing of the checkout is importable there (no ``PYTHONPATH``, another working folder), and the binaries
are looked up where a pip user's are (``$XDG_CACHE_HOME/shard-operator/controlplane/bin``), not in
``tools/controlplane/bin``. The dependencies come from the package index (through pip's cache, when the
index lets pip keep its answers), and Go's build and module caches are the usual ones, so ``testenv build``
only links the three binaries when ``make setup`` has built them once. Measured on two busy cores: about
3 minutes in all, of which 1.5-2 minutes for the wheel and the venv, 35-75 seconds for ``testenv build``
(a cold build takes 5-20 minutes) and half a minute for ``testenv up``/``down`` and the examples.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.testing.test_readme import snippet

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.controlplane, pytest.mark.redis, pytest.mark.timeout(900)]


@dataclass
class Installed:
    """The fresh virtual environment with the wheel installed, and the environment its commands run in."""

    wheel: Path
    python: Path
    env: dict[str, str]
    home: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str | Path, cwd: Path, timeout: float = 300) -> str:
        """Run ``args`` (a command of the venv's ``bin``) in ``cwd``; fail with its output unless it exits 0."""
        command = [str(self.python.parent / str(args[0])), *map(str, args[1:])]
        done = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr


def pip_user_environment(home: Path, go_caches: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without what points into the checkout or at other binaries."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "KUBEBUILDER_ASSETS", "VIRTUAL_ENV", "KUBECONFIG", "REDIS_URL")
           and not key.startswith("SHARD_OPERATOR_")}
    env.update(go_caches)  # Go's default caches (their defaults would move with XDG_CACHE_HOME)
    env["XDG_CACHE_HOME"] = str(home / "cache")
    env["SHARD_OPERATOR_TESTENV_DIR"] = str(home / "testenv")
    return env


def go_caches() -> dict[str, str]:
    if shutil.which("go") is None:
        pytest.skip("Go is not installed (`shard-operator testenv build` needs it; `make setup` does too)")
    found = subprocess.run(["go", "env", "GOCACHE", "GOMODCACHE"], capture_output=True, text=True, check=True)
    gocache, gomodcache = found.stdout.split()
    return {"GOCACHE": gocache, "GOMODCACHE": gomodcache}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Build the wheel from a copy of the package, install it into a new venv, run ``testenv build``."""
    caches = go_caches()
    home = tmp_path_factory.mktemp("pip-user")
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def timed(step: str) -> None:
        nonlocal started
        seconds[step] = round(time.monotonic() - started, 1)
        started = time.monotonic()

    source = home / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "shard_operator", source / "shard_operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "bin", "*.egg-info"))
    dist = home / "dist"
    # The wheel builds (its isolated build fetches setuptools) while the venv gets the dependencies.
    builder = subprocess.Popen([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                                f"{source}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = Installed(dist, venv / "bin" / "python", pip_user_environment(home, caches), home, seconds)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed.run("pip", "install", "-q", "--disable-pip-version-check", *project["dependencies"],
                  *project["optional-dependencies"]["testenv"], "pytest", cwd=home, timeout=600)
    output, _ = builder.communicate(timeout=300)
    assert builder.returncode == 0, output
    (installed.wheel,) = dist.glob("shard_operator-*.whl")
    # The wheel with its own metadata's requirements (all there by now, so this checks they resolve).
    installed.run("pip", "install", "-q", "--disable-pip-version-check", f"{installed.wheel}[testenv]",
                  cwd=home, timeout=300)
    timed("wheel and venv")
    installed.run("shard-operator", "testenv", "build", cwd=home, timeout=900)
    timed("testenv build")
    yield installed
    subprocess.run([str(venv / "bin" / "shard-operator"), "testenv", "down"], env=installed.env, cwd=home,
                   capture_output=True, timeout=120)
    print(f"\nwheel check, seconds per step: {seconds}")


def test_the_wheel_ships_the_type_marker_and_the_go_module_of_the_control_plane(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    module = "shard_operator/testing/controlplane_src/"
    assert {"shard_operator/py.typed", f"{module}build.sh", f"{module}go.mod", f"{module}go.sum",
            f"{module}cmd/etcd/main.go", f"{module}cmd/kube-apiserver/main.go",
            f"{module}cmd/kube-controller-manager/main.go"} <= names


def test_the_installed_package_is_the_wheel_and_its_binaries_are_the_pip_users_own(installed):
    where = installed.run("python", "-c", "import shard_operator, shard_operator.testing.binaries as b; "
                          "print(shard_operator.__file__); print(b.controlplane_binary('kube-apiserver'))",
                          cwd=installed.home)
    package, apiserver = where.split()
    assert Path(package).is_relative_to(installed.python.parents[1]), package
    assert Path(apiserver) == installed.home / "cache" / "shard-operator" / "controlplane" / "bin" / "kube-apiserver"


def test_testenv_up_starts_an_api_server_and_redis_the_cli_reaches_and_down_stops_them(installed):
    installed.run("shard-operator", "testenv", "up", cwd=installed.home, timeout=180)
    try:
        exports = installed.run("shard-operator", "testenv", "env", "--export", cwd=installed.home)
        values = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines()
                      if line.startswith("export "))
        assert {"KUBECONFIG", "REDIS_URL", "SHARD_OPERATOR_REDIS_URL"} <= set(values)
        check = ("import sys, redis; from shard_operator.kube import load_api_client, request_json; "
                 "api = load_api_client(sys.argv[1]); "
                 "print(request_json(api, 'GET', '/api/v1/namespaces/default')['metadata']['name']); "
                 "print(redis.Redis.from_url(sys.argv[2]).ping())")
        answers = installed.run("python", "-c", check, values["KUBECONFIG"].strip("'\""),
                                values["REDIS_URL"].strip("'\""), cwd=installed.home)
        assert answers.split() == ["default", "True"]
    finally:
        installed.run("shard-operator", "testenv", "down", cwd=installed.home, timeout=120)
    status = subprocess.run([str(installed.python.parent / "shard-operator"), "testenv", "status"],
                            env=installed.env, cwd=installed.home, capture_output=True, text=True, timeout=60)
    assert status.returncode != 0


def test_the_readmes_fakecontext_and_operatorrunner_examples_pass_outside_the_checkout(installed):
    project = installed.home / "myproject"
    project.mkdir()
    for name in ("myoperator.py", "test_myoperator.py", "test_myoperator_integration.py"):
        (project / name).write_text(snippet(name))
    (project / "conftest.py").write_text('pytest_plugins = ["shard_operator.testing.fixtures"]\n')
    output = installed.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, timeout=300)
    assert "3 passed" in output, output
