"""The reconciler API: what an operator author implements and what each outcome means.

Reconciliation is level-based. A :class:`Request` names an object (namespace and name), never an
event or the object itself: the reconciler reads the object's current state from the shared cache,
makes the world match it, and returns. Many changes to a waiting object collapse into one request.

Outcomes of one reconcile, decided in one place (:func:`shard_operator.worker.outcome.decide`):

=====================================  ===============================================================
the reconciler…                         the framework…
=====================================  ===============================================================
returns ``None`` or ``Result()``        forgets the key's failures (success)
returns ``Result(requeue_after=t)``     forgets the failures and adds the key again after ``t`` seconds
returns ``Result(requeue=True)``        adds the key again with the rate limiter's backoff
raises ``TemporaryError(delay=t)``      adds the key again after the longer of ``t`` s and the rate
                                        limiter's backoff (the backoff if ``t`` is None); an error
raises ``TooManyRequestsError`` (429)   the same, with the server's ``Retry-After`` as ``t``
raises ``TerminalError``                forgets the key; counted as an error; no retry until the object
                                        changes again
raises any other exception              adds the key again with the rate limiter's backoff; counted
=====================================  ===============================================================

In every case the key's claim is released (``done``) after the outcome is applied, so a change that
arrived during the reconcile is handed out again exactly once. An error is logged at ERROR with its
traceback, recorded as a ``ReconcileError`` Warning Event on the object and shown by ``shard-operator
status`` while the key retries.

If the worker lost its claim on the key during the reconcile (it was paused past the claim's deadline and
another worker may own the key now), the next write through ``ctx`` raises ``ClaimLost`` instead of being
sent; the outcome is dropped and the key is added again, so the latest spec is reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from shard_operator.errors import TemporaryError, TerminalError

if TYPE_CHECKING:
    from shard_operator.context import Context

__all__ = ["Reconciler", "Request", "Result", "TemporaryError", "TerminalError"]


@dataclass(frozen=True, slots=True)
class Request:
    """The object to reconcile: ``namespace`` is ``""`` for cluster-scoped objects."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        """The queue key: ``namespace/name``, or ``name`` for cluster-scoped objects."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def from_key(cls, key: str) -> Request:
        namespace, _, name = key.rpartition("/")
        if not name:
            raise ValueError(f"invalid object key {key!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class Result:
    """What a successful reconcile asks for next; the default means "done until something changes"."""

    requeue_after: float | None = None
    requeue: bool = False

    def __post_init__(self) -> None:
        if self.requeue_after is not None and self.requeue_after < 0:
            raise ValueError("requeue_after must be >= 0")


@runtime_checkable
class Reconciler(Protocol):
    """Makes the world match one object's desired state; see the module docstring for outcomes.

    What the worker calls, once per handed-out key: any function ``reconcile(request, ctx)`` with these
    types is one (the arguments are positional). ``ctx`` (:class:`~shard_operator.context.Context`) gives
    the shared cache, an API client, an event recorder, a logger and background jobs. A reconciler must be
    idempotent and must not assume it sees every intermediate state of the object.
    """

    def __call__(self, request: Request, ctx: Context, /) -> Result | None: ...
