"""Least-privilege RBAC derived from the operator: what it watches, what it writes, and its Lease.

Where it sits: ``shard-operator manifests`` calls :func:`rbac_manifests`. The rules follow from the
:class:`~shard_operator.operator.Operator` alone, so they cannot drift from the code:

- every watched resource (``For``, ``Owns``, ``Watches``): ``get``, ``list``, ``watch`` (the leader's
  informers);
- the primary resource: ``get``, ``patch``, ``update`` on its ``status``; ``update`` on its
  ``finalizers`` (an owner reference with ``blockOwnerDeletion`` needs it); ``patch`` and ``update``
  on the object itself only when its :class:`~shard_operator.manifests.CustomResource` declares a
  finalizer (adding or removing one patches metadata);
- owned resources (``Owns``): ``create``, ``update``, ``patch``, ``delete``: the operator makes them;
- Events (core group): ``create``, ``patch`` (the recorder);
- its Lease, in the operator's namespace only: ``create`` (which cannot be limited by name) and
  ``get``, ``update`` limited to the Lease's name with ``resourceNames``.

``Watches`` resources stay read-only: an operator that writes them says so in ``Operator.rbac_rules``, which
``rendering.generate`` passes as ``extra_rules``.
Cluster-wide rules go in a ClusterRole (the operator watches every namespace unless scoped); the Lease
rules go in a Role in its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from shard_operator.handler import Owns
from shard_operator.manifests.crd import declared_resources

if TYPE_CHECKING:
    from shard_operator.operator import Operator
    from shard_operator.source import Resource

__all__ = ["READ", "WRITE", "cluster_rules", "rbac_manifests"]

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete")
Rule = dict[str, Any]


def _rule(group: str, resources: Iterable[str], verbs: Iterable[str], names: Sequence[str] = ()) -> Rule:
    rule: Rule = {"apiGroups": [group], "resources": sorted(set(resources)), "verbs": sorted(set(verbs))}
    if names:
        rule["resourceNames"] = list(names)
    return rule


def cluster_rules(operator: Operator, extra_rules: Sequence[Rule] = ()) -> list[Rule]:
    """The ClusterRole's rules: one rule per (API group, set of verbs), sorted so output is stable."""
    verbs: dict[tuple[str, str], set[str]] = {}

    def grant(resource: Resource, subresource: str | None, *wanted: str) -> None:
        name = f"{resource.plural}/{subresource}" if subresource else resource.plural
        verbs.setdefault((resource.group, name), set()).update(wanted)

    primary = operator.resource
    for handler in operator.handlers:
        grant(handler.resource, None, *READ)
        if isinstance(handler, Owns) and handler in operator.owns:
            grant(handler.resource, None, *WRITE)
    grant(primary, "status", "get", "patch", "update")
    grant(primary, "finalizers", "update")
    declared = declared_resources().get(primary)
    if declared is not None and declared.finalizer:
        grant(primary, None, "patch", "update")
    verbs.setdefault(("", "events"), set()).update({"create", "patch"})
    # Merge resources of one group that need the same verbs into one rule.
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (group, name), wanted in sorted(verbs.items()):
        merged.setdefault((group, tuple(sorted(wanted))), []).append(name)
    rules = [_rule(group, names, wanted) for (group, wanted), names in sorted(merged.items())]
    return rules + list(extra_rules)


def rbac_manifests(operator: Operator, *, name: str, namespace: str, lease_name: str,
                   extra_rules: Sequence[Rule] = ()) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole + binding, and the leader-election Role + binding."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "operator"}
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    lease_rules = [_rule("coordination.k8s.io", ["leases"], ["create"]),
                   _rule("coordination.k8s.io", ["leases"], ["get", "update"], [lease_name])]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace,
                                                                    "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "labels": labels}, "rules": cluster_rules(operator, extra_rules)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": f"{name}-leader-election", "namespace": namespace, "labels": labels},
         "rules": lease_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{name}-leader-election", "namespace": namespace, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{name}-leader-election"},
         "subjects": subject},
    ]
