"""``shard-operator testenv``: the embedded control plane and Redis as long-running background
servers, for running the operator when the user has no cluster.

``up`` starts etcd, kube-apiserver, kube-controller-manager and redis-server detached from the
calling process and records them in ``state.json`` in the state folder; ``env`` prints the variables
that point a client at them (``KUBECONFIG``, ``REDIS_URL`` and ``SHARD_OPERATOR_REDIS_URL``, which
``shard-operator run`` and ``status`` read); ``down`` stops every recorded process and removes the folder.
``up`` starts Kubernetes 1.34 unless told another version (``--kubernetes-version 1.37`` or
``$SHARD_OPERATOR_KUBERNETES_VERSION``); ``state.json`` records which.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from shard_operator.errors import TestEnvError
from shard_operator.testing.binaries import DEFAULT_VERSION, VERSION_VARIABLE
from shard_operator.testing.binaries import kubernetes_version as _kubernetes_version
from shard_operator.testing.controlplane import ControlPlane
from shard_operator.testing.redis_server import RedisServer

__all__ = ["TestEnvState", "default_state_dir", "env_lines", "testenv_down", "testenv_status", "testenv_up"]


def default_state_dir() -> Path:
    """``$SHARD_OPERATOR_TESTENV_DIR``, else ``$XDG_STATE_HOME/shard-operator/testenv`` (``~/.local/state``)."""
    explicit = os.environ.get("SHARD_OPERATOR_TESTENV_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "shard-operator" / "testenv"


@dataclass(frozen=True)
class TestEnvState:
    """What ``up`` recorded: the addresses to hand to the operator and the processes to stop."""

    __test__ = False  # not a pytest test class

    kubeconfig: str
    redis_url: str
    server_url: str
    pids: dict[str, int]
    kubernetes_version: str = ""  # "" in the state of an older release: it started 1.34

    def save(self, folder: Path) -> None:
        (folder / "state.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> TestEnvState | None:
        try:
            return cls(**json.loads((folder / "state.json").read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise TestEnvError(f"{folder / 'state.json'} is corrupt ({exc}); run `shard-operator testenv down`") \
                from exc

    def alive(self) -> bool:
        return bool(self.pids) and all(_pid_alive(pid) for pid in self.pids.values())


def testenv_up(folder: Path, kubernetes_version: str | None = None) -> tuple[TestEnvState, bool]:
    """Start the environment in ``folder`` unless it already runs; returns (state, started_now).

    ``kubernetes_version`` as for :class:`ControlPlane` (:class:`~shard_operator.errors.ConfigError` if
    unsupported). A running environment is reused whatever its version unless one was asked for
    (argument or variable): then one of another version raises :class:`TestEnvError` (stop it first
    with ``down``).
    """
    existing = TestEnvState.load(folder)
    if existing is not None:
        if existing.alive():
            running = existing.kubernetes_version or DEFAULT_VERSION
            asked = kubernetes_version or os.environ.get(VERSION_VARIABLE)
            wanted = _kubernetes_version(asked) if asked else running
            if wanted != running:
                raise TestEnvError(f"the test environment in {folder} runs Kubernetes {running}, not {wanted}; "
                                   "stop it first with `shard-operator testenv down`")
            return existing, False
        testenv_down(folder)  # a half-dead environment from a crash or reboot: clear it first
    folder.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(workdir=folder / "controlplane", kubernetes_version=kubernetes_version)
    redis_server = RedisServer(workdir=folder / "redis")
    try:
        plane.start()
        redis_server.start()
    except BaseException:
        plane.stop()
        redis_server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    pids = {**plane.pids}
    if redis_server.pid is not None:
        pids["redis-server"] = redis_server.pid
    state = TestEnvState(kubeconfig=str(plane.kubeconfig), redis_url=redis_server.url,
                         server_url=plane.server_url, pids=pids, kubernetes_version=plane.kubernetes_version)
    state.save(folder)
    return state, True


def testenv_down(folder: Path, timeout: float = 10.0) -> bool:
    """Stop every recorded process (SIGTERM, then SIGKILL) and remove ``folder``; False if nothing ran."""
    state = TestEnvState.load(folder)
    if state is None:
        shutil.rmtree(folder, ignore_errors=True)
        return False
    # The reverse of their start order: controller manager, API server, etcd, then Redis.
    for name in ("kube-controller-manager", "kube-apiserver", "etcd", "redis-server"):
        pid = state.pids.get(name)
        if pid is not None:
            _stop_group(pid, timeout)
    shutil.rmtree(folder, ignore_errors=True)
    return True


def testenv_status(folder: Path) -> TestEnvState | None:
    """The recorded state if every process of it still runs, else None."""
    state = TestEnvState.load(folder)
    return state if state is not None and state.alive() else None


def env_lines(state: TestEnvState, export: bool = False) -> list[str]:
    """``NAME=value`` lines for a shell: the kubeconfig and Redis URL for kubectl, redis-cli and the CLI."""
    prefix = "export " if export else ""
    values = {"KUBECONFIG": state.kubeconfig, "REDIS_URL": state.redis_url,
              "SHARD_OPERATOR_REDIS_URL": state.redis_url}
    return [f"{prefix}{name}={shlex.quote(value)}" for name, value in values.items()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (it is when ``up`` and ``down`` share a process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
