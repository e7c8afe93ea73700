"""One error hierarchy for shard-operator.

Every error the library raises on purpose derives from :class:`ShardOperatorError`.
Errors of the transports are translated at one boundary each (``raise Mapped(...) from exc``):
``kubernetes.client.ApiException`` and urllib3 / socket errors in :mod:`shard_operator.kube`,
``redis.RedisError`` in :mod:`shard_operator.storage` (``redis_errors()``, used by the storage
modules and around the manager's own Redis reads). Callers never import a client library to handle
a failure: ``.importlinter`` lets only ``kube`` import the Kubernetes client, and only the storage
modules (storage, queue, cache, sharding, jobs) import redis::

    ShardOperatorError
    ├── ConfigError              bad configuration or command-line input; the CLI exits 2
    ├── TestEnvError             the embedded control plane or redis-server failed to start or stop
    │   └── BinaryNotFoundError  kube-apiserver / etcd / redis-server is not installed or built
    ├── QueueError               the work queue refused an operation
    │   ├── ShutDownError        the queue was shut down; no new work is handed out
    │   └── ClaimLostError       a worker's claim on a key expired or was taken over
    │       └── ClaimLost        raised inside a reconcile: the claim is lost, so nothing more is written
    ├── StorageError             Redis could not be reached or answered with an error
    ├── JobError                 a background job could not be enqueued or run (``shard_operator.jobs``)
    │   ├── UnregisteredTaskError  the task name is not in the task registry; nothing runs
    │   └── JobSerializationError  job arguments or a job's result are not JSON
    ├── AlreadyOwnedError        set_controller_reference: another controller owns the object
    ├── ShardingUnsupportedError the API server ignored a shard selector (Kubernetes < 1.36 or the gate off)
    ├── ApiError                 the Kubernetes API answered with an error (status, reason), or did not answer
    │   ├── TransportError       no answer: connection refused or reset, TLS failure, timeout (status None)
    │   ├── NotFoundError        404
    │   ├── ConflictError        409 (stale resourceVersion or already exists)
    │   ├── GoneError            410 (resourceVersion too old: relist)
    │   └── TooManyRequestsError 429 (or a 5xx with Retry-After): wait ``retry_after`` seconds
    └── ReconcileError           raised by a reconciler to tell the framework what to do
        ├── TemporaryError       retry after ``delay`` seconds (or the rate limiter's backoff)
        └── TerminalError        do not retry; counted in the error metric only
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyOwnedError",
    "ApiError",
    "BinaryNotFoundError",
    "ClaimLost",
    "ClaimLostError",
    "ConfigError",
    "ConflictError",
    "GoneError",
    "JobError",
    "JobSerializationError",
    "NotFoundError",
    "QueueError",
    "ReconcileError",
    "ShardOperatorError",
    "ShardingUnsupportedError",
    "ShutDownError",
    "StorageError",
    "TemporaryError",
    "TerminalError",
    "TestEnvError",
    "TooManyRequestsError",
    "TransportError",
    "UnregisteredTaskError",
]


class ShardOperatorError(Exception):
    """Base class of every error shard-operator raises on purpose."""


class ConfigError(ShardOperatorError):
    """Configuration or command-line input is invalid; the message says which value and why."""


class TestEnvError(ShardOperatorError):
    """A process of the embedded test environment failed to start, become ready or stop."""

    __test__ = False  # not a pytest test class, despite the name


class BinaryNotFoundError(TestEnvError):
    """A binary the test environment needs (kube-apiserver, etcd, redis-server) was not found."""


class QueueError(ShardOperatorError):
    """The work queue refused an operation."""


class ShutDownError(QueueError):
    """The queue is shut down: ``get`` hands out nothing more."""


class ClaimLostError(QueueError):
    """The caller no longer holds the claim on a key (it expired and the key was handed out again)."""


class ClaimLost(ClaimLostError):
    """The worker's claim on the key being reconciled is lost (past its deadline minus a safety margin, or
    taken over), so the reconcile is aborted before it writes; the worker queues the key again."""


class StorageError(ShardOperatorError):
    """Redis could not be reached, timed out, or answered with an error."""


class JobError(ShardOperatorError):
    """A background job could not be enqueued or run."""


class UnregisteredTaskError(JobError):
    """The task is not in the task registry: it is never run from a name found in Redis alone."""


class JobSerializationError(JobError):
    """Job arguments or a job's result cannot be written as JSON; the message names the offending value."""


class AlreadyOwnedError(ShardOperatorError):
    """The object already has a different controller; it is not taken over."""

    def __init__(self, message: str, *, owner: dict[str, Any]) -> None:
        super().__init__(message)
        self.owner = owner


class ShardingUnsupportedError(ShardOperatorError):
    """The API server does not honour ``shardSelector`` (server-side sharded LIST and WATCH): it is
    older than Kubernetes 1.36 or runs without the ``ShardedListAndWatch`` feature gate, so its list
    came back without ``metadata.shardInfo``. ``selector`` is the selector that was sent."""

    def __init__(self, message: str, *, selector: str) -> None:
        super().__init__(message)
        self.selector = selector


class ApiError(ShardOperatorError):
    """The Kubernetes API server answered with an error status (or, as :class:`TransportError`, did not answer)."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class TransportError(ApiError):
    """The API server could not be reached or did not answer: connection refused or reset, a TLS
    failure, a timeout, a response cut off mid-way. ``status`` is None; retrying later may succeed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=None, reason="Transport")


class NotFoundError(ApiError):
    """404: the object does not exist."""


class ConflictError(ApiError):
    """409: the write was based on a stale resourceVersion, or the object already exists."""


class GoneError(ApiError):
    """410: the requested resourceVersion is no longer available; the informer must relist."""


class TooManyRequestsError(ApiError):
    """429 (or a 5xx with ``Retry-After``): the server asks the client to wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, status: int | None = 429, reason: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class ReconcileError(ShardOperatorError):
    """Raised by a reconciler to choose what happens to the key; see :mod:`shard_operator.reconcile`."""


class TemporaryError(ReconcileError):
    """Retry the key: after ``delay`` seconds if given, else after the rate limiter's backoff."""

    def __init__(self, message: str = "", delay: float | None = None) -> None:
        super().__init__(message)
        if delay is not None and delay < 0:
            raise ValueError("TemporaryError delay must be >= 0")
        self.delay = delay


class TerminalError(ReconcileError):
    """Do not retry this generation of the object: the error is counted and the key forgotten."""
