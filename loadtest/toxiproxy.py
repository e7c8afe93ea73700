"""toxiproxy between the operator and its API server and Redis, for network faults.

Where it sits: ``loadtest.environment`` starts the server (built from its Go module by
``tools/toxiproxy/build.sh``; never a prebuilt binary) and creates one proxy per upstream;
``loadtest.faults`` adds and removes toxics through its REST API (plain urllib, no client library).

Toxics used by the lab: ``latency`` (added delay, ms), ``reset_peer`` (connections reset after a
timeout, ms) and disabling a proxy (connections refused: the upstream looks down).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shard_operator.testing.process import ManagedProcess, free_port

__all__ = ["Toxiproxy", "toxiproxy_binary"]

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "toxiproxy"


def toxiproxy_binary() -> Path:
    """``$LOADTEST_TOXIPROXY_BIN`` or tools/toxiproxy/bin/toxiproxy-server, built on first use."""
    override = os.environ.get("LOADTEST_TOXIPROXY_BIN")
    if override:
        return Path(override)
    binary = TOOLS / "bin" / "toxiproxy-server"
    if not binary.exists():
        subprocess.run([str(TOOLS / "build.sh")], check=True)
    return binary


class Toxiproxy:
    """A toxiproxy server on loopback; :meth:`create` makes a proxy and returns its listen address."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self._process = ManagedProcess("toxiproxy", [str(toxiproxy_binary()), "-host", "127.0.0.1",
                                                     "-port", str(self.port)], log_path)

    def __enter__(self) -> Toxiproxy:
        self._process.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                self._call("GET", "/version")
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self._process.stop()
                    raise
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self._process.stop()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        try:
            return json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:  # /version answers plain text
            return raw.decode()

    def create(self, name: str, upstream: str) -> str:
        listen = f"127.0.0.1:{free_port()}"
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        return listen

    def add_toxic(self, proxy: str, kind: str, *, stream: str = "downstream", toxicity: float = 1.0,
                  **attributes: int) -> str:
        name = f"{kind}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", {"name": name, "type": kind, "stream": stream,
                                                         "toxicity": toxicity, "attributes": attributes})
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        try:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})
