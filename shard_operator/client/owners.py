"""Owner references: how a reconciler marks the objects it creates as its own.

An object whose ``ownerReferences`` names the primary object with ``controller: true`` is mapped back
to that primary by :class:`~shard_operator.handler.Owns` (so a change to a child wakes its parent),
is listed by the shared cache's owner index, and is garbage-collected by Kubernetes when the owner
goes. These helpers follow controller-runtime's ``controllerutil.SetControllerReference``: an
object has at most one controller, and taking over one that another controller owns is refused with
:class:`AlreadyOwnedError`. Pure functions on plain dicts: the caller writes the object.
"""

from __future__ import annotations

from typing import Any

from shard_operator.errors import AlreadyOwnedError

__all__ = ["AlreadyOwnedError", "controller_reference", "owner_reference", "set_controller_reference"]


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _same_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same owner: same group, kind and name (versions may differ), as controller-runtime compares."""
    return (_group(str(a.get("apiVersion", ""))) == _group(str(b.get("apiVersion", "")))
            and a.get("kind") == b.get("kind") and a.get("name") == b.get("name"))


def owner_reference(owner: dict[str, Any], *, controller: bool = True,
                    block_owner_deletion: bool = True) -> dict[str, Any]:
    """The ``ownerReferences`` entry naming ``owner`` (which must come from the API: it needs a uid).

    ``block_owner_deletion`` keeps a foreground deletion of the owner waiting for this object; the
    API server only accepts it from clients allowed to update the owner's finalizers.
    """
    meta = owner.get("metadata") or {}
    missing = [field for field, value in (("apiVersion", owner.get("apiVersion")), ("kind", owner.get("kind")),
                                          ("metadata.name", meta.get("name")), ("metadata.uid", meta.get("uid")))
               if not value]
    if missing:
        raise ValueError(f"an owner reference needs the owner's {', '.join(missing)}")
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": controller, "blockOwnerDeletion": block_owner_deletion}


def controller_reference(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ``ownerReferences`` entry with ``controller: true``, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def set_controller_reference(obj: dict[str, Any], owner: dict[str, Any], *,
                             block_owner_deletion: bool = True) -> dict[str, Any]:
    """Make ``owner`` the controller of ``obj``, in place, and return ``obj``.

    An existing reference to the same owner is replaced (so calling it again is harmless). Raises
    :class:`AlreadyOwnedError` when another controller owns ``obj``, and ValueError when the owner
    cannot own it: a namespaced owner of an object in another namespace or of a cluster-scoped one.
    """
    reference = owner_reference(owner, controller=True, block_owner_deletion=block_owner_deletion)
    meta = obj.setdefault("metadata", {})
    owner_namespace = (owner.get("metadata") or {}).get("namespace")
    if owner_namespace and meta.get("namespace") != owner_namespace:
        where = f"namespace {meta['namespace']!r}" if meta.get("namespace") else "the cluster scope"
        raise ValueError(f"{owner['kind']} {owner_namespace}/{reference['name']} cannot own an object in {where}")
    current = controller_reference(obj)
    if current is not None and not _same_object(current, reference):
        raise AlreadyOwnedError(
            f"{meta.get('name')!r} is already controlled by {current.get('kind')} {current.get('name')!r}",
            owner=current)
    references = list(meta.get("ownerReferences") or [])
    for index, ref in enumerate(references):
        if _same_object(ref, reference):
            references[index] = reference
            break
    else:
        references.append(reference)
    meta["ownerReferences"] = references
    return obj
