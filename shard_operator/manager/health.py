"""The manager's HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics``.

The manager supplies two callables that say whether the pod is alive and ready, each returning
``(ok, reason)``; they must answer from state the manager keeps (never by asking Redis), so a probe
answers at once even while Redis hangs. ``/metrics`` renders every process's metrics through
:func:`shard_operator.metrics.render` (multiprocess mode).

The server is bounded whatever its clients do: one selector thread accepts connections and reads
request heads without blocking, closing a connection that stays idle past ``idle_timeout``, sends a
head larger than 8 KiB, or beyond ``max_connections`` open at once; a complete request goes to one of
``handler_threads`` fixed threads, which writes the answer under a socket timeout. Idle or slow clients
therefore cost a file descriptor each, never a thread. The listening socket is bound in the
constructor, so the manager binds it before forking its workers (a busy port is a configuration error,
found before any child exists), and it is closed in every forked child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from shard_operator import metrics

__all__ = ["Check", "HealthServer"]

Check = Callable[[], tuple[bool, str]]
log = logging.getLogger(__name__)

_MAX_HEAD = 8192
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_TEXT = "text/plain; charset=utf-8"
_servers: weakref.WeakSet[HealthServer] = weakref.WeakSet()


def _close_in_child() -> None:
    # A forked worker must not hold the manager's listening socket: it would keep the port bound after
    # the manager exits. The child's copy is closed; the parent's socket is untouched.
    for server in list(_servers):
        with contextlib.suppress(OSError):
            server._listener.close()


os.register_at_fork(after_in_child=_close_in_child)


@dataclass
class _Pending:
    """A connection whose request head is still arriving."""

    sock: socket.socket
    opened: float
    head: bytearray = field(default_factory=bytearray)


class HealthServer:
    """Serves the three endpoints on ``host:port`` (port 0: a free one, see :attr:`port`).

    Contract: binding happens in the constructor (OSError when the port is taken); :meth:`start` adds
    ``handler_threads + 1`` threads and no more, however many clients connect; :meth:`stop` closes
    every connection and the listening socket.
    """

    def __init__(self, host: str, port: int, *, healthy: Check, ready: Check, handler_threads: int = 4,
                 idle_timeout: float = 5.0, write_timeout: float = 5.0, max_connections: int = 256) -> None:
        self._checks = {"/healthz": healthy, "/readyz": ready}
        self._handler_threads, self._idle_timeout = handler_threads, idle_timeout
        self._write_timeout, self._max_connections = write_timeout, max_connections
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._listener.setblocking(False)
        self._wake_read, self._wake_write = socket.socketpair()
        self._requests: queue.SimpleQueue[tuple[socket.socket, bytes] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        _servers.add(self)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> HealthServer:
        self._threads = [threading.Thread(target=self._serve, name="health-server", daemon=True)]
        self._threads += [threading.Thread(target=self._handle_loop, name=f"health-handler-{i}", daemon=True)
                          for i in range(self._handler_threads)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        for _ in range(self._handler_threads):
            self._requests.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        """Close the listening socket (what :meth:`stop` ends with; alone when never started)."""
        for sock in (self._listener, self._wake_read, self._wake_write):
            sock.close()

    # -- the selector thread: accept, read heads, drop idle connections ---------------------------

    def _serve(self) -> None:
        pending: dict[socket.socket, _Pending] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=min(self._idle_timeout, 0.5)):
                    if key.fileobj is self._listener:
                        self._accept(selector, pending)
                    elif key.fileobj is not self._wake_read and key.fileobj in pending:
                        self._read(selector, pending, pending[key.fileobj])
                now = time.monotonic()
                for conn in [c for c, p in pending.items() if now - p.opened > self._idle_timeout]:
                    self._drop(selector, pending, conn)
            for conn in list(pending):
                self._drop(selector, pending, conn)

    def _accept(self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending]) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: the oldest idle connections make room
                log.warning("health server cannot accept: %s", exc)
                return
            conn.setblocking(False)
            while len(pending) >= self._max_connections:
                self._drop(selector, pending, min(pending, key=lambda c: pending[c].opened))
            pending[conn] = _Pending(conn, time.monotonic())
            selector.register(conn, selectors.EVENT_READ)

    def _read(self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending],
              state: _Pending) -> None:
        try:
            chunk = state.sock.recv(_MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        state.head += chunk
        complete = b"\r\n\r\n" in state.head or b"\n\n" in state.head
        if not chunk or len(state.head) > _MAX_HEAD or complete:
            selector.unregister(state.sock)
            del pending[state.sock]
            if complete:
                self._requests.put((state.sock, bytes(state.head)))
            else:
                state.sock.close()

    @staticmethod
    def _drop(selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending], conn: socket.socket) -> None:
        selector.unregister(conn)
        del pending[conn]
        conn.close()

    # -- the handler threads: answer one request per connection ----------------------------------

    def _handle_loop(self) -> None:
        while (request := self._requests.get()) is not None:
            conn, head = request
            try:
                conn.setblocking(True)
                conn.settimeout(self._write_timeout)
                conn.sendall(self._answer(head))
            except OSError as exc:
                log.debug("health client went away: %s", exc)
            except Exception:  # a bug here must not cost a handler thread
                log.exception("health server failed to answer")
            finally:
                conn.close()

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, b"bad request", _TEXT, head=False)
        method, path = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response(405, b"method not allowed", _TEXT, head=False)
        if path == "/metrics":
            return _response(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8", method == "HEAD")
        if path not in self._checks:
            return _response(404, b"not found", _TEXT, method == "HEAD")
        try:
            ok, reason = self._checks[path]()
        except Exception as exc:  # a failing check means "not ok", never a 500 with a traceback
            ok, reason = False, f"check failed: {exc}"
        body = (reason or ("ok" if ok else "not ok")).encode()
        return _response(200 if ok else 503, body, _TEXT, method == "HEAD")


def _response(status: int, body: bytes, content_type: str, head: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head else body)
