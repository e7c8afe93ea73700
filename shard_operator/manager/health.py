"""The manager's HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics``.

A stdlib ``ThreadingHTTPServer`` in a daemon thread; the manager supplies two callables that say
whether the pod is alive and ready, each returning ``(ok, reason)``. ``/metrics`` renders every
process's metrics through :func:`shard_operator.metrics.render` (multiprocess mode).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shard_operator import metrics

__all__ = ["Check", "HealthServer"]

Check = Callable[[], tuple[bool, str]]
log = logging.getLogger(__name__)


class HealthServer:
    """Serves the three endpoints on ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(self, host: str, port: int, *, healthy: Check, ready: Check) -> None:
        checks = {"/healthz": healthy, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
                elif path in checks:
                    try:
                        ok, reason = checks[path]()
                    except Exception as exc:  # a failing check means "not ok", never a 500 with a traceback
                        ok, reason = False, f"check failed: {exc}"
                    self._reply(200 if ok else 503, (reason or ("ok" if ok else "not ok")).encode(),
                                "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"not found", "text/plain; charset=utf-8")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
