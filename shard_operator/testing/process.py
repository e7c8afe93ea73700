"""A child server process of the test environment: started with its output in a log file,
polled for readiness, and stopped with SIGTERM then SIGKILL so that nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shard_operator.errors import TestEnvError

__all__ = ["ManagedProcess", "free_port", "wait_until"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1,
               alive: Callable[[], None] | None = None) -> None:
    """Poll ``check`` until it returns True; raise :class:`TestEnvError` after ``timeout`` seconds.

    ``alive`` is called before each poll and should raise if the process being waited on died,
    so a crash is reported at once instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() >= deadline:
            raise TestEnvError(f"{what} was not ready after {timeout:.0f} s")
        time.sleep(interval)


class ManagedProcess:
    """One server process, in its own session so that stopping it stops its children too."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = env
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the process; its stdout and stderr go to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self._env, cwd=self._cwd, start_new_session=True,
                )
            except OSError as exc:
                raise TestEnvError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc

    def raise_if_exited(self) -> None:
        """Raise :class:`TestEnvError` with the end of the log if the process has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise TestEnvError(
                f"{self.name} exited with code {self._proc.returncode}; last lines of {self.log_path}:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``timeout`` seconds, then SIGKILL it. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        # Children that outlived their parent in the same group are stopped too.
        _signal_group(proc.pid, signal.SIGKILL)
        self._proc = None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
