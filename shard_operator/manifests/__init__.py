"""Deployment manifests generated from the operator itself (kubebuilder's ``make manifests``, for Python).

``shard-operator manifests --app module:attr --out DIR`` imports the operator and writes what a cluster
needs to run it: the CRDs of the custom resources it serves (schemas from typed spec models,
:mod:`.schema` and :mod:`.crd`), least-privilege RBAC derived from what it watches and writes
(:mod:`.rbac`), and the workload — ServiceAccount, StatefulSet, Services, PodDisruptionBudget,
NetworkPolicy and Redis (:mod:`.workload`, :mod:`.redis`) — as a kustomize base (:mod:`.rendering`).
The monitoring kit (PrometheusRule, ServiceMonitor, Grafana dashboard) is in :mod:`.monitoring`.
"""

from shard_operator.manifests.crd import Column, CustomResource, declared_resources
from shard_operator.manifests.schema import SpecError, load, openapi, openapi_schema

__all__ = ["Column", "CustomResource", "SpecError", "declared_resources", "load", "openapi",
           "openapi_schema"]
