"""One error boundary per transport: Kubernetes transport failures become TransportError in
``shard_operator.kube``, Redis errors become StorageError in ``shard_operator.storage``."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from shard_operator.client import install_crd, open_crd
from shard_operator.errors import ApiError, NotFoundError, StorageError, TransportError
from shard_operator.kube import api_error, raw_request, request_json, transport_errors
from shard_operator.leaderelection import LeaderElectionRecord, LeaseLock
from shard_operator.source import Resource
from shard_operator.storage import connect, redis_errors


def api_client(port: int) -> k8s.ApiClient:
    conf = k8s.Configuration(host=f"http://127.0.0.1:{port}")
    conf.retries = False
    return k8s.ApiClient(conf)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(answer: bytes | None) -> Iterator[int]:
    """A one-connection-at-a-time TCP server: writes ``answer`` (None: closes at once) to each client."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    halt = threading.Event()

    def run() -> None:
        while not halt.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if answer is not None:
                    conn.recv(65536)
                    conn.sendall(answer)
                else:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    halt.set()
    server.close()


@pytest.fixture
def resetting_server() -> Iterator[int]:
    yield from serve(None)


@pytest.fixture
def truncating_server() -> Iterator[int]:
    yield from serve(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")


@pytest.fixture
def not_found_server() -> Iterator[int]:
    body = b'{"kind":"Status","code":404,"reason":"NotFound","message":"widgets \\"a\\" not found"}'
    yield from serve(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


@pytest.fixture
def html_server() -> Iterator[int]:
    body = b"<html>a proxy's page</html>"
    yield from serve(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\nConnection: close\r\n\r\n" + body)


def test_a_refused_connection_is_a_transport_error():
    with pytest.raises(TransportError) as caught:
        request_json(api_client(free_port()), "GET", "/api/v1/namespaces", timeout=2)
    assert caught.value.status is None and isinstance(caught.value, ApiError)


def test_a_connection_reset_by_the_server_is_a_transport_error(resetting_server):
    with pytest.raises(TransportError):
        request_json(api_client(resetting_server), "GET", "/api/v1/namespaces", timeout=2)


def test_a_response_cut_off_mid_body_is_a_transport_error(truncating_server):
    with pytest.raises(TransportError):
        request_json(api_client(truncating_server), "GET", "/api/v1/namespaces", timeout=2)


# Reads go through the client library, writes straight to its urllib3 pool: both translate the same way.
@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_a_read_timeout_is_a_transport_error(method):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()  # accepts (the kernel does) but never answers
    body = {"status": {}} if method == "PATCH" else None
    try:
        with pytest.raises(TransportError):
            raw_request(api_client(server.getsockname()[1]), method, "/api/v1/namespaces", body=body, timeout=0.3)
    finally:
        server.close()


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_an_http_error_answer_is_still_its_own_api_error_not_a_transport_error(not_found_server, method):
    body = {"status": {}} if method == "PATCH" else None
    with pytest.raises(NotFoundError) as caught:
        request_json(api_client(not_found_server), method, "/apis/example.com/v1/widgets/a", body=body, timeout=2)
    assert caught.value.status == 404 and not isinstance(caught.value, TransportError)


def test_an_api_exception_with_status_0_is_a_transport_error_and_one_with_a_status_is_not():
    assert isinstance(api_error(ApiException(status=0, reason="SSLError: certificate verify failed")),
                      TransportError)
    assert type(api_error(ApiException(status=500, reason="Internal Server Error"))) is ApiError
    with pytest.raises(TransportError), transport_errors():
        raise ConnectionResetError("Connection reset by peer")
    with pytest.raises(ValueError), transport_errors():
        raise ValueError("not a transport failure: passes through")


def test_the_lease_lock_fails_with_the_kubernetes_boundarys_transport_error(resetting_server):
    with pytest.raises(TransportError):
        LeaseLock(api_client(resetting_server), "default", "leader").get(timeout=2)
    with pytest.raises(TransportError):
        LeaseLock(api_client(free_port()), "default", "leader").create(LeaderElectionRecord("me", 15), timeout=2)


def test_a_lease_answer_that_is_not_json_is_an_api_error_but_not_a_transport_error(html_server):
    with pytest.raises(ApiError) as caught:
        LeaseLock(api_client(html_server), "default", "leader").get(timeout=2)
    assert not isinstance(caught.value, TransportError)


def test_installing_a_crd_on_an_unreachable_api_server_raises_the_projects_transport_error():
    crd = open_crd(Resource("example.com", "v1", "widgets"), "Widget")
    with pytest.raises(TransportError):
        install_crd(api_client(free_port()), crd, timeout=0.5)


def test_redis_errors_become_storage_errors_at_the_storage_boundary():
    client = connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    with pytest.raises(StorageError) as caught, redis_errors():
        client.ping()
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
