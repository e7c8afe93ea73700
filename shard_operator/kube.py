"""The boundary to the Kubernetes API: build an ``ApiClient`` and translate its errors.

Every module that talks to the API server (the informer in :mod:`shard_operator.source`, leader
election, the reconcilers' client) gets its ``kubernetes.client.ApiClient`` here, and maps what the
API answers (``ApiException``, a non-2xx raw response, an ``ERROR`` watch event's ``Status``) into
:mod:`shard_operator.errors`, so nothing above this layer imports the client library to handle a
failure. Failures of the transport itself (urllib3 errors, connection resets, timeouts, an
``ApiException`` with status 0) become :class:`~shard_operator.errors.TransportError`: in
:func:`raw_request` and :func:`request_json`, and in :func:`transport_errors` around reads of a
streamed response.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3

from shard_operator import codec
from shard_operator.errors import (
    ApiError,
    ConflictError,
    GoneError,
    NotFoundError,
    TooManyRequestsError,
    TransportError,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "api_error",
    "api_error_from_response",
    "load_api_client",
    "raw_request",
    "request_json",
    "status_error",
    "transport_error",
    "transport_errors",
]


def load_api_client(kubeconfig: str | Path | None = None, *, context: str | None = None,
                    **configuration: Any) -> ApiClient:
    """A new ``ApiClient`` from ``kubeconfig`` (or ``$KUBECONFIG``, ``~/.kube/config``), else in-cluster.

    Extra keyword arguments are set on the ``Configuration`` (e.g. ``retries``). The caller closes it.
    """
    from kubernetes import client, config

    conf = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    default_path = Path.home() / ".kube" / "config"
    if path is None and default_path.exists():
        path = default_path
    if path is not None:
        config.load_kube_config(config_file=str(path), context=context, client_configuration=conf)
    else:
        config.load_incluster_config(client_configuration=conf)
    for key, value in configuration.items():
        setattr(conf, key, value)
    return client.ApiClient(conf)


def status_error(status: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> ApiError:
    """The error for a ``metav1.Status`` body (an error response, or a watch ``ERROR`` event)."""
    code = status.get("code")
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    reason = status.get("reason")
    message = str(status.get("message") or reason or f"HTTP {code}")
    details = status.get("details") or {}
    retry_after = _retry_after(headers, details)
    if code == 404:
        return NotFoundError(message, status=code, reason=reason)
    if code == 409:
        return ConflictError(message, status=code, reason=reason)
    if code == 410 or reason in ("Expired", "Gone"):
        return GoneError(message, status=410, reason=reason)
    if code == 429 or (code is not None and code >= 500 and retry_after is not None):
        return TooManyRequestsError(message, status=code, reason=reason, retry_after=retry_after)
    return ApiError(message, status=code, reason=reason)


def api_error_from_response(status: int, body: bytes | str | None,
                            headers: Mapping[str, str] | None = None, reason: str | None = None) -> ApiError:
    """The error for a non-2xx HTTP response; the body is parsed as a ``Status`` when it is one."""
    parsed: dict[str, Any] = {}
    if body:
        try:
            loaded = json.loads(body)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            parsed = loaded
    if not parsed.get("message"):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        parsed["message"] = (text or reason or f"HTTP {status}")[:500]
    parsed["code"] = status
    parsed.setdefault("reason", reason)
    return status_error(parsed, headers)


def api_error(exc: Exception) -> ApiError:
    """Translate a ``kubernetes.client.ApiException`` (use as ``raise api_error(exc) from exc``).

    Status 0 means no HTTP answer (the REST layer wraps TLS and protocol errors so): a TransportError.
    """
    status = getattr(exc, "status", None) or 0
    if not status:
        return TransportError(f"no answer from the API server: {getattr(exc, 'reason', None) or exc}")
    return api_error_from_response(int(status), getattr(exc, "body", None),
                                   getattr(exc, "headers", None), getattr(exc, "reason", None))


def transport_error(exc: BaseException) -> TransportError | None:
    """The :class:`TransportError` for a failure of the transport (urllib3's ``HTTPError`` family, an
    ``OSError`` such as a connection reset or a socket timeout, an ``ApiException`` with status 0);
    None for anything else."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException) and not exc.status:
        error = api_error(exc)
        assert isinstance(error, TransportError)
        return error
    if isinstance(exc, HTTPError | OSError):
        return TransportError(f"no answer from the API server: {type(exc).__name__}: {exc}".replace("\n", " "))
    return None


@contextlib.contextmanager
def transport_errors() -> Iterator[None]:
    """Translate transport failures raised inside the block into :class:`TransportError` (use it around
    reads of a streamed response: a watch cut off mid-way raises urllib3's ``ProtocolError``)."""
    try:
        yield
    except ApiError:
        raise
    except Exception as exc:
        error = transport_error(exc)
        if error is None:
            raise
        raise error from exc


def _retry_after(headers: Mapping[str, str] | None, details: Mapping[str, Any]) -> float | None:
    value: Any = details.get("retryAfterSeconds")
    if headers is not None and value is None:
        value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the caller's backoff applies


def raw_request(api_client: ApiClient, method: str, path: str, *, query: list[tuple[str, Any]] | None = None,
                headers: dict[str, str] | None = None, body: Any = None, timeout: Any = None) -> Any:
    """Send one request through the client's REST layer, with no model (de)serialization.

    Returns the open urllib3 response of a 2xx answer (the caller reads it and releases the connection);
    a non-2xx answer, or an ``ApiException`` of the REST layer, raises the :class:`ApiError` family;
    a transport failure (connection refused or reset, TLS, timeouts) raises :class:`TransportError`.
    """
    headers = dict(headers or {"Accept": "application/json"})
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    if method in _WRITES:
        with transport_errors():
            response = _send_write(api_client, method, path, query or [], headers, body, timeout)
        if not 200 <= response.status <= 299:
            try:
                with transport_errors():
                    data = response.data
            finally:
                response.release_conn()
            raise api_error_from_response(response.status, data, response.headers, response.reason)
        return response
    method, url, headers, serialized, post = api_client.param_serialize(
        method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"])
    from kubernetes.client.exceptions import ApiException

    try:
        with transport_errors():
            rest = api_client.call_api(method, url, headers, serialized, post, _request_timeout=timeout)
    except ApiException as exc:  # raised by the REST layer itself, with an HTTP status
        raise api_error(exc) from exc
    response = rest.response
    if not 200 <= rest.status <= 299:
        try:
            with transport_errors():
                data = response.data
        finally:
            response.release_conn()
        raise api_error_from_response(rest.status, data, response.headers, rest.reason)
    return response


#: Sent by :func:`_send_write`; reads keep the client library's path (its client-go style read retries).
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _send_write(api_client: ApiClient, method: str, path: str, query: list[tuple[str, Any]],
                headers: dict[str, str], body: Any, timeout: Any) -> Any:
    """One write straight to the client's urllib3 pool: the same host, TLS, proxy, retries and auth
    headers as the client library, without its per-call (de)serialization layers (a third of a PATCH's
    CPU time in a worker). The bearer token is read through ``auth_settings()`` on every call, so a
    token refresh hook (exec plugins, projected service-account tokens) still applies."""
    conf = api_client.configuration
    merged = {**api_client.default_headers, **headers}
    for setting in conf.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            merged[str(setting["key"])] = str(setting["value"])
    url = conf.host + path + ("?" + urlencode(query) if query else "")
    if body is None or isinstance(body, bytes):
        payload = body
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = codec.dumps(body)
    if isinstance(timeout, (int, float)) and timeout:
        timeout = urllib3.Timeout(total=timeout)
    elif isinstance(timeout, tuple) and len(timeout) == 2:
        timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
    else:
        timeout = None
    return api_client.rest_client.pool_manager.urlopen(method, url, body=payload, headers=merged, timeout=timeout,
                                                       preload_content=False)


def request_json(api_client: ApiClient, method: str, path: str, **options: Any) -> Any:
    """:func:`raw_request`, then the decoded JSON body (``{}`` for an empty one); the connection is released."""
    response = raw_request(api_client, method, path, **options)
    try:
        with transport_errors():
            data = response.data
    finally:
        response.release_conn()
    return codec.loads(data) if data else {}
