"""A real redis-server on a free loopback port, for integration tests and ``shard-operator testenv``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import redis

from shard_operator.errors import TestEnvError
from shard_operator.testing.binaries import redis_server_binary
from shard_operator.testing.process import ManagedProcess, free_port, wait_until

__all__ = ["RedisServer"]

_DEFAULT_CONFIG = {
    "save": '""',  # no RDB snapshots: tests want speed, not durability
    "appendonly": "no",
    "protected-mode": "yes",
    "databases": "16",
}


class RedisServer:
    """Start ``redis-server`` with the given config directives; ``url`` is valid once started.

    ``config`` entries override the defaults (no persistence, 16 databases). The server binds
    127.0.0.1 only. Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, config: dict[str, str] | None = None, *, workdir: Path | None = None,
                 port: int | None = None, start_timeout: float = 20.0) -> None:
        self._config = {**_DEFAULT_CONFIG, **(config or {})}
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="shard-operator-redis-"))
        self.port = port or free_port()
        self._start_timeout = start_timeout
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for_db(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "redis.conf"
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.workdir}"]
        lines += [f"{key} {value}" for key, value in self._config.items()]
        conf.write_text("\n".join(lines) + "\n")
        self._process = ManagedProcess("redis-server", [str(redis_server_binary()), str(conf)],
                                       self.workdir / "redis.log")
        self._process.start()
        try:
            wait_until(self.ping, timeout=self._start_timeout, what="redis-server",
                       alive=self._process.raise_if_exited)
        except TestEnvError:
            self.stop()
            raise
        return self

    def ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
