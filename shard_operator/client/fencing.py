"""The client a reconcile writes through: every write checks the worker's claim and, by default, carries
the object's ``resourceVersion`` as a precondition.

Where it sits: the worker binds one :class:`FencedClient` per reconcile (``ctx.client``) over the
process's :class:`~shard_operator.client.Client` and the key's :class:`~shard_operator.context.Claim`.
Together the two guards fence a worker that lost its claim (invariant I1):

- the claim check (local, one clock read) stops a paused or stalled worker before it sends anything:
  creates, patches, deletes, Events and raw requests raise :class:`~shard_operator.errors.ClaimLost`;
- the ``resourceVersion`` precondition closes what the check cannot: a write that passed the check and
  then lands after another worker changed the object gets a 409 instead of overwriting the newer state.

``unconditional=True`` drops the precondition of one patch or delete. It is unsafe: a paused worker's
unconditional write that passed the claim check may still land after the key's new owner wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shard_operator.client.api import MERGE_PATCH, Client, _Body, conditional_patch

if TYPE_CHECKING:
    from shard_operator.client.counter import RequestCounter, Verb
    from shard_operator.context import Claim
    from shard_operator.source.resource import Resource

__all__ = ["FencedClient"]

_Object = dict[str, Any]


class FencedClient:
    """``inner``'s verbs behind ``claim``: see the module docstring.

    Contract: a write method calls ``claim.check()`` before it sends anything (so it raises ``ClaimLost``
    and sends nothing once the claim is lost); ``patch`` and ``delete`` are conditional on ``obj``'s
    ``metadata.resourceVersion`` unless ``unconditional=True`` (a patch that already names a
    resourceVersion is sent as given); ``create`` cannot be conditional and is fenced by the check alone.
    Reads (``get``) are not fenced. Building one costs two attribute stores.
    """

    __slots__ = ("claim", "inner")

    def __init__(self, inner: Client, claim: Claim) -> None:
        self.inner, self.claim = inner, claim

    @property
    def counter(self) -> RequestCounter:
        """The request counter of the client underneath."""
        return self.inner.counter

    @property
    def field_manager(self) -> str:
        return self.inner.field_manager

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> _Object:
        """The object from the API server (a counted GET; reconcilers read the cache instead)."""
        return self.inner.get(resource, name, namespace)

    def create(self, resource: Resource, obj: _Object) -> _Object:
        """Create ``obj``; ConflictError when it exists. Fenced by the claim check only."""
        self.claim.check()
        return self.inner.create(resource, obj)

    def patch(self, resource: Resource, obj: _Object, patch: _Body, *, content_type: str = MERGE_PATCH,
              subresource: str | None = None, unconditional: bool = False) -> _Object:
        """Apply ``patch`` to ``obj`` only if ``obj`` is still current (``unconditional=True``: anyway, unsafe).

        A merge patch gets ``metadata.resourceVersion``; a JSON patch (``content_type=JSON_PATCH``) gets a
        ``replace`` of ``/metadata/resourceVersion``. A stale ``obj`` ends in ConflictError (409).
        """
        self.claim.check()
        if not unconditional:
            patch = conditional_patch(obj, patch)
        return self.inner.patch(resource, obj, patch, content_type=content_type, subresource=subresource)

    def delete(self, resource: Resource, obj: _Object, *, unconditional: bool = False,
               propagation_policy: str | None = None) -> _Object:
        """Delete ``obj`` only if it is the very object read (``preconditions``: its uid and resourceVersion)."""
        self.claim.check()
        return self.inner.delete(resource, obj, precondition=not unconditional,
                                 propagation_policy=propagation_policy)

    def patch_status(self, resource: Resource, obj: _Object, status: _Object) -> _Object:
        """Merge ``status`` into ``obj``'s status subresource if ``obj`` is still current."""
        self.claim.check()
        return self.inner.patch_status(resource, obj, status)

    def add_finalizer(self, resource: Resource, obj: _Object, finalizer: str) -> _Object:
        """Add ``finalizer`` to ``obj`` if absent; conditional, as every finalizer change is."""
        self.claim.check()
        return self.inner.add_finalizer(resource, obj, finalizer)

    def remove_finalizer(self, resource: Resource, obj: _Object, finalizer: str) -> _Object:
        """Remove ``finalizer`` from ``obj`` if present; conditional, as every finalizer change is."""
        self.claim.check()
        return self.inner.remove_finalizer(resource, obj, finalizer)

    def request(self, verb: Verb, resource: Resource, path: str, *, body: _Body = None,
                content_type: str = "application/json", subresource: str | None = None) -> _Object:
        """One raw request, as :meth:`Client.request`; every verb but ``get`` and ``list`` is fenced
        (by the claim check only: the body is sent as given)."""
        if verb not in ("get", "list"):
            self.claim.check()
        return self.inner.request(verb, resource, path, body=body, content_type=content_type,
                                  subresource=subresource)
