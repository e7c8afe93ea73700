"""CustomResourceDefinitions: build a permissive one and install it, waiting until the API server
serves the new resource. Used by the examples, the tests, and operators that install their own CRD at
start."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from shard_operator.errors import ApiError, ConflictError
from shard_operator.kube import request_json
from shard_operator.source import Resource

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["install_crd", "open_crd"]

_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def open_crd(resource: Resource, kind: str, *, singular: str | None = None) -> dict[str, Any]:
    """A CRD for ``resource`` whose spec and status accept any fields, with the status subresource
    (so status writes do not bump ``metadata.generation``)."""
    if not resource.group:
        raise ValueError("a CRD needs an API group")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{resource.group}"},
        "spec": {"group": resource.group, "scope": "Namespaced" if resource.namespaced else "Cluster",
                 "names": {"plural": resource.plural, "singular": singular or kind.lower(), "kind": kind},
                 "versions": [{"name": resource.version, "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": _OPEN, "status": _OPEN}}}}]},
    }


def install_crd(api_client: ApiClient, crd: dict[str, Any], *, timeout: float = 30.0) -> None:
    """Create ``crd`` (an existing one is kept) and wait until its resource is listed, i.e. the CRD is
    established and discovery serves it. Raises the :class:`~shard_operator.errors.ApiError` of a
    refused create at once, and the last error of the listing after ``timeout`` seconds."""
    with contextlib.suppress(ConflictError):  # already there: kept as it is
        request_json(api_client, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd,
                     timeout=max(timeout, 1.0))
    spec = crd["spec"]
    path = f"/apis/{spec['group']}/{spec['versions'][0]['name']}/{spec['names']['plural']}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            request_json(api_client, "GET", path, query=[("limit", 1)], timeout=max(timeout, 1.0))
            return
        except ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
