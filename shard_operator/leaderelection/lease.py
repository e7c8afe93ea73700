"""The Lease lock: read and write a leader-election record on a ``coordination.k8s.io/v1`` Lease.

This is the only part of leader election that talks to the API server (client-go's
``resourcelock.LeaseLock``). :class:`~shard_operator.leaderelection.elector.LeaderElector` decides
*what* to write; this module writes it with optimistic concurrency (every update carries the
``resourceVersion`` last read or written, so a concurrent writer makes it fail with
:class:`~shard_operator.errors.ConflictError`). Its requests go through :mod:`shard_operator.kube`, the
one Kubernetes boundary, so its failures are already :mod:`shard_operator.errors`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shard_operator.errors import ApiError, TooManyRequestsError
from shard_operator.kube import request_json

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["LeaderElectionRecord", "LeaseLock"]


@dataclass(frozen=True)
class LeaderElectionRecord:
    """The election state kept in a Lease's spec. An empty ``holder_identity`` means nobody leads.

    ``renew_time`` is the holder's wall clock: candidates never compare it with their own clock,
    they only notice whether the record changed (see the elector).
    """

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    lease_transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> LeaderElectionRecord:
        spec = spec or {}
        return cls(holder_identity=spec.get("holderIdentity") or "",
                   lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=_parse_time(spec.get("acquireTime")),
                   renew_time=_parse_time(spec.get("renewTime")),
                   lease_transitions=int(spec.get("leaseTransitions") or 0))

    def to_spec(self) -> dict[str, Any]:
        return {"holderIdentity": self.holder_identity,
                "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": _format_time(self.acquire_time),
                "renewTime": _format_time(self.renew_time),
                "leaseTransitions": self.lease_transitions}


class LeaseLock:
    """One Lease ``namespace/name``, read and written through ``api_client``. Not thread-safe.

    Contract: :meth:`get` raises :class:`NotFoundError` when the Lease does not exist; :meth:`create`
    raises :class:`ConflictError` when it already exists; :meth:`update` replaces the spec of the
    object last read or written and raises :class:`ConflictError` if anyone wrote it since (a 429,
    :class:`TooManyRequestsError`, keeps that object: the server applied nothing). No answer at
    all (refused, reset, timed out) is a :class:`~shard_operator.errors.TransportError`; every other failure is an
    :class:`ApiError`. ``timeout`` bounds each call in seconds.
    """

    def __init__(self, api_client: ApiClient, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self._api_client = api_client
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._lease: dict[str, Any] | None = None  # the object last read or written

    @property
    def has_object(self) -> bool:
        """Whether a resourceVersion is known, so :meth:`update` can be tried without a :meth:`get`."""
        return self._lease is not None

    def get(self, timeout: float) -> LeaderElectionRecord:
        self._lease = self._request("GET", f"{self._collection}/{self.name}", None, timeout)
        return LeaderElectionRecord.from_spec(self._lease.get("spec"))

    def create(self, record: LeaderElectionRecord, timeout: float) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record.to_spec()}
        self._lease = self._request("POST", self._collection, body, timeout)

    def update(self, record: LeaderElectionRecord, timeout: float) -> None:
        if self._lease is None:
            raise ApiError(f"lease {self.namespace}/{self.name} must be read before it is updated")
        body = copy.deepcopy(self._lease)
        body["spec"] = record.to_spec()
        try:
            self._lease = self._request("PUT", f"{self._collection}/{self.name}", body, timeout)
        except TooManyRequestsError:
            raise  # refused before it was applied: the version read is still the one to write on
        except ApiError:
            self._lease = None  # stale or unknown: the next attempt must read again
            raise

    def _request(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        """One raw JSON call through the Kubernetes boundary (:func:`shard_operator.kube.request_json`),
        which raises the :class:`ApiError` family (a :class:`~shard_operator.errors.TransportError` when
        nothing answered).

        The typed ``CoordinationV1Api`` is not used: it re-serializes times with ``isoformat()``, which
        drops the microseconds ``MicroTime`` requires when they are zero.
        """
        try:
            loaded = request_json(self._api_client, method, path, body=body, timeout=max(timeout, 0.05))
        except ValueError as exc:  # a 2xx answer whose body is not JSON
            raise ApiError(f"lease request {method} {path}: the answer is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ApiError(f"lease request {method} {path}: the answer is not a JSON object")
        return loaded


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _format_time(value: datetime | None) -> str | None:
    """RFC 3339 with microseconds, as ``metav1.MicroTime`` expects."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
