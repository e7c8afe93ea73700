"""Custom resources declared in code: the CRD an operator's kind needs, built from its typed spec model.

Where it sits: an operator module declares each custom resource it serves as a :class:`CustomResource`
(group, version, kind, the spec and status dataclasses, printer columns, the finalizer it uses). The
declaration registers itself, so ``shard-operator manifests --app module:attr`` finds the CRDs of every
resource the operator watches just by importing the module; the same object installs the CRD at run time
(:meth:`CustomResource.install`) and gives the reconciler its :class:`~shard_operator.source.Resource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shard_operator.manifests.schema import openapi_schema
from shard_operator.source import Resource

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["Column", "CustomResource", "declared_resources"]

_REGISTRY: dict[Resource, CustomResource] = {}


@dataclass(frozen=True)
class Column:
    """A ``kubectl get`` column: ``json_path`` into the object (``.spec.replicas``), of openAPI ``type``."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def manifest(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class CustomResource:
    """A namespaced (or cluster-scoped) custom resource whose schema comes from dataclasses.

    ``spec`` and ``status`` are dataclass types (see :mod:`shard_operator.manifests.schema`); the status
    is served as a subresource, so status writes do not bump ``metadata.generation``. ``finalizer`` names
    the finalizer the operator puts on its objects (its RBAC then allows patching the object itself).
    ``columns`` are printer columns shown after NAME; an ``Age`` column is always last.
    """

    group: str
    version: str
    kind: str
    spec: type
    status: type | None = None
    plural: str = ""
    short_names: Sequence[str] = ()
    categories: Sequence[str] = ()
    namespaced: bool = True
    columns: Sequence[Column] = ()
    finalizer: str | None = None
    description: str = ""
    _resource: Resource = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plural = self.plural or self.kind.lower() + "s"
        object.__setattr__(self, "plural", plural)
        object.__setattr__(self, "_resource", Resource(self.group, self.version, plural, namespaced=self.namespaced))
        _REGISTRY[self._resource] = self

    @property
    def resource(self) -> Resource:
        return self._resource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {"spec": openapi_schema(self.spec)}
        if self.status is not None:
            properties["status"] = openapi_schema(self.status)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": ["spec"]}
        if self.description:
            schema["description"] = self.description
        return schema

    def manifest(self) -> dict[str, Any]:
        """The CustomResourceDefinition (apiextensions.k8s.io/v1)."""
        names: dict[str, Any] = {"plural": self.plural, "singular": self.kind.lower(), "kind": self.kind,
                                 "listKind": f"{self.kind}List"}
        if self.short_names:
            names["shortNames"] = list(self.short_names)
        if self.categories:
            names["categories"] = list(self.categories)
        columns = [c.manifest() for c in self.columns]
        columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
        version: dict[str, Any] = {"name": self.version, "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": self.schema()},
                                   "additionalPrinterColumns": columns}
        if self.status is not None:
            version["subresources"] = {"status": {}}
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{self.plural}.{self.group}"},
                "spec": {"group": self.group, "names": names,
                         "scope": "Namespaced" if self.namespaced else "Cluster", "versions": [version]}}

    def object(self, name: str, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
        """A manifest of one object of this kind (spec fields as given, in camelCase)."""
        metadata = {"name": name, "namespace": namespace} if self.namespaced else {"name": name}
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata, "spec": spec}

    def install(self, api_client: ApiClient, *, timeout: float = 30.0) -> None:
        """Create the CRD (an existing one is kept) and wait until the API server serves it."""
        from shard_operator.client import install_crd

        install_crd(api_client, self.manifest(), timeout=timeout)


def declared_resources() -> dict[Resource, CustomResource]:
    """Every :class:`CustomResource` declared so far (by importing the modules that declare them)."""
    return dict(_REGISTRY)
