"""The reconcilers' writes to the API server: plain-dict objects of any resource.

Last stage of a reconcile (docs/design.md §2.6): a worker reads objects from the shared cache and writes
through this :class:`Client`, always with optimistic concurrency, so a write based on a stale cached
object fails with :class:`~shard_operator.errors.ConflictError` (409) and the worker requeues the key
instead of overwriting a newer state. Requests are raw ``ApiClient.call_api`` calls on the paths of a
:class:`~shard_operator.source.Resource` with JSON bodies (no model classes, so any resource works),
errors are mapped through :mod:`shard_operator.kube`, and every request is counted by verb in a
:class:`~shard_operator.client.RequestCounter`.

Methods never modify the objects passed in; they return the object as the API server stored it.
Transport failures (connection refused, timeouts) propagate as the HTTP library raised them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shard_operator.client.counter import RequestCounter, Verb
from shard_operator.kube import request_json
from shard_operator.source.resource import Resource

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["JSON_PATCH", "MERGE_PATCH", "Client", "conditional_patch"]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_Body = dict[str, Any] | list[dict[str, Any]] | None


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ValueError("the object has no metadata.name")
    return meta


def _resource_version(obj: dict[str, Any]) -> str:
    rv = _metadata(obj).get("resourceVersion")
    if not rv:
        raise ValueError(f"{_metadata(obj)['name']!r} has no metadata.resourceVersion: "
                         "optimistic concurrency needs the object as read from the API or the cache")
    return str(rv)


def conditional_patch(obj: dict[str, Any], patch: _Body) -> _Body:
    """``patch`` made conditional on ``obj``'s ``metadata.resourceVersion`` (a new patch; ``patch`` is kept).

    A merge patch (a dict) gets ``metadata.resourceVersion``; a JSON patch (a list) gets a ``replace`` of
    ``/metadata/resourceVersion`` first, which the API server refuses with 409 when the object changed. A
    patch that already names a resourceVersion is returned as it is. ValueError when ``obj`` has none.
    """
    if isinstance(patch, list):
        if any(op.get("path") == "/metadata/resourceVersion" for op in patch):
            return patch
        return [{"op": "replace", "path": "/metadata/resourceVersion", "value": _resource_version(obj)}, *patch]
    if isinstance(patch, dict):
        meta = patch.get("metadata")
        if isinstance(meta, dict) and meta.get("resourceVersion"):
            return patch
        return {**patch, "metadata": {**(meta if isinstance(meta, dict) else {}),
                                      "resourceVersion": _resource_version(obj)}}
    return patch


class Client:
    """Counted, concurrency-safe writes (and, for the rare case, reads) over an ``ApiClient``.

    ``field_manager`` names this operator in ``managedFields`` for every write. ``counter`` is shared
    with whoever wants to check the request counts (a new one when None).
    """

    def __init__(self, api_client: ApiClient, *, counter: RequestCounter | None = None,
                 field_manager: str = "shard-operator", timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.counter = counter if counter is not None else RequestCounter()
        self.field_manager = field_manager
        self.timeout = timeout

    # -- plain verbs ---------------------------------------------------------------

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object from the API server (a counted GET: reconcilers read the cache instead)."""
        return self.request("get", resource, self._path(resource, name, namespace))

    def create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` in its ``metadata.namespace``; ConflictError when it already exists."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        return self.request("create", resource, self._path(resource, None, namespace), body=obj)

    def patch(self, resource: Resource, obj: dict[str, Any], patch: _Body, *,
              content_type: str = MERGE_PATCH, subresource: str | None = None) -> dict[str, Any]:
        """Apply ``patch`` (a merge patch, or a JSON patch list with ``content_type=JSON_PATCH``).

        The patch is sent as given: include ``metadata.resourceVersion`` (:func:`conditional_patch`)
        to make the write conditional. A reconcile's ``ctx.client`` (:class:`FencedClient`) does that
        by default.
        """
        meta = _metadata(obj)
        path = self._path(resource, meta["name"], meta.get("namespace"), subresource)
        return self.request("patch", resource, path, body=patch, content_type=content_type,
                            subresource=subresource)

    def delete(self, resource: Resource, obj: dict[str, Any], *, precondition: bool = True,
               propagation_policy: str | None = None) -> dict[str, Any]:
        """Delete ``obj``; with ``precondition`` only the very object read (its uid and resourceVersion).

        NotFoundError when it is already gone; ConflictError when it changed since it was read.
        """
        meta = _metadata(obj)
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if precondition:
            body["preconditions"] = {"uid": meta.get("uid"), "resourceVersion": _resource_version(obj)}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        return self.request("delete", resource, self._path(resource, meta["name"], meta.get("namespace")),
                            body=body)

    # -- status and finalizers -------------------------------------------------------

    def patch_status(self, resource: Resource, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Merge ``status`` into the status subresource of ``obj``, if ``obj`` is still current.

        The patch carries ``obj``'s ``metadata.resourceVersion``: when the object changed since it was
        read, the API server answers 409 and ConflictError is raised (the worker requeues the key).
        Merge-patch semantics: keys set to None are removed, lists (``conditions``) are replaced.
        """
        patch = {"metadata": {"resourceVersion": _resource_version(obj)}, "status": status}
        return self.patch(resource, obj, patch, subresource="status")

    def add_finalizer(self, resource: Resource, obj: dict[str, Any], finalizer: str) -> dict[str, Any]:
        """Add ``finalizer`` to ``obj`` if absent (no request when present); 409 → ConflictError."""
        finalizers = list(_metadata(obj).get("finalizers") or [])
        if finalizer in finalizers:
            return obj
        return self._set_finalizers(resource, obj, [*finalizers, finalizer])

    def remove_finalizer(self, resource: Resource, obj: dict[str, Any], finalizer: str) -> dict[str, Any]:
        """Remove ``finalizer`` from ``obj`` if present (no request when absent); 409 → ConflictError.

        Removing the last finalizer of an object being deleted lets the API server delete it.
        """
        finalizers = list(_metadata(obj).get("finalizers") or [])
        if finalizer not in finalizers:
            return obj
        return self._set_finalizers(resource, obj, [f for f in finalizers if f != finalizer])

    def _set_finalizers(self, resource: Resource, obj: dict[str, Any], finalizers: list[str]) -> dict[str, Any]:
        # A merge patch replaces the whole list; the resourceVersion makes sure it replaces the list we read.
        patch = {"metadata": {"resourceVersion": _resource_version(obj), "finalizers": finalizers}}
        return self.patch(resource, obj, patch)

    # -- the one raw request -----------------------------------------------------------

    def request(self, verb: Verb, resource: Resource, path: str, *, body: _Body = None,
                content_type: str = "application/json", subresource: str | None = None) -> dict[str, Any]:
        """Send one counted request and return the decoded JSON answer; API errors are mapped."""
        self.counter.record(verb, f"{resource.name}/{subresource}" if subresource else resource.name)
        method = {"get": "GET", "list": "GET", "create": "POST", "update": "PUT", "patch": "PATCH",
                  "delete": "DELETE"}[verb]
        query = [("fieldManager", self.field_manager)] if method in ("POST", "PUT", "PATCH") else []
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        answer = request_json(self.api_client, method, path, query=query, headers=headers, body=body,
                              timeout=self.timeout)
        return answer if isinstance(answer, dict) else {"items": answer}

    @staticmethod
    def _path(resource: Resource, name: str | None, namespace: str | None,
              subresource: str | None = None) -> str:
        if resource.namespaced and not namespace:
            raise ValueError(f"{resource.name} is namespaced: the object needs metadata.namespace")
        path = resource.path(namespace if resource.namespaced else None)
        if name is not None:
            path += "/" + quote(name, safe="")
        return f"{path}/{subresource}" if subresource else path
