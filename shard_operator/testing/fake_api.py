"""An API server and shared cache in memory, for :class:`~shard_operator.testing.FakeContext`.

:class:`ObjectStore` holds the objects of each :class:`~shard_operator.source.Resource`;
:class:`FakeCache` reads them as ``ctx.cache`` does and :class:`FakeClient` (a
:class:`~shard_operator.client.Client`) writes them as the API server would: ``resourceVersion`` goes up
on every write, ``generation`` when anything outside ``metadata`` and ``status`` changes, a merge patch
carrying a stale ``metadata.resourceVersion`` raises :class:`~shard_operator.errors.ConflictError`, a
status write changes only ``status`` (as the status subresource does) and any other write leaves
``status`` alone, deleting an object with finalizers only marks it, and removing the last finalizer of a
marked object or deleting an owner removes it and (like the garbage collector) what it owns.

Differences from a cluster, on purpose: the cache sees a write at once (a real cache catches up a moment
later, after the watch event), there is no admission, defaulting or schema validation, and
``Client.request`` (a raw request to any path) is not served.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shard_operator.cache.selector import LabelSelector
from shard_operator.client.api import JSON_PATCH, Client
from shard_operator.client.counter import RequestCounter, Verb
from shard_operator.client.events import EVENTS
from shard_operator.errors import ApiError, ConflictError, NotFoundError
from shard_operator.source.resource import Resource, object_key

__all__ = ["FakeCache", "FakeClient", "ObjectStore", "Write"]

_Object = dict[str, Any]
_Objects = list[_Object]
_Keys = list[str]
_Body = dict[str, Any] | list[dict[str, Any]] | None
_FIXED = ("uid", "creationTimestamp", "generation", "deletionTimestamp")


@dataclass(frozen=True)
class Write:
    """One successful write: ``verb`` (``create``, ``patch``, ``delete``), the object's key, and what was
    sent (the object, the patch, or the delete options); ``subresource`` is ``"status"`` for status writes."""

    verb: str
    resource: Resource
    key: str
    body: Any
    subresource: str | None = None


class ObjectStore:
    """The objects of every resource, by key; the one state a fake cache and a fake client share."""

    def __init__(self) -> None:
        self._objects: dict[Resource, dict[str, _Object]] = {}
        self._versions = itertools.count(1)
        self._errors: dict[tuple[Resource, str], list[ApiError]] = {}
        self.writes: list[Write] = []

    def of(self, resource: Resource) -> dict[str, _Object]:
        return self._objects.setdefault(resource, {})

    def put(self, resource: Resource, obj: _Object) -> _Object:
        """Store ``obj`` as the API server returned it: with a uid, a new resourceVersion and a generation."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("the object has no metadata.name")
        if resource.namespaced and not meta.get("namespace"):
            raise ValueError(f"{resource.name} is namespaced: the object needs metadata.namespace")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._versions))
        self.of(resource)[object_key(obj)] = obj
        return copy.deepcopy(obj)

    def get(self, resource: Resource, key: str) -> _Object | None:
        found = self.of(resource).get(key)
        return copy.deepcopy(found) if found is not None else None

    def remove(self, resource: Resource, key: str) -> None:
        """Remove the object and, like the garbage collector, every object it owns."""
        gone = self.of(resource).pop(key, None)
        uid = (gone or {}).get("metadata", {}).get("uid")
        if not uid:
            return
        for other, objects in list(self._objects.items()):
            for other_key, obj in list(objects.items()):
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                    self.remove(other, other_key)

    def fail_next_write(self, resource: Resource, key: str, error: ApiError) -> None:
        self._errors.setdefault((resource, key), []).append(error)

    def check_injected(self, resource: Resource, key: str) -> None:
        pending = self._errors.get((resource, key))
        if pending:
            raise pending.pop(0)


class FakeCache:
    """``ctx.cache`` over an :class:`ObjectStore` (:class:`~shard_operator.context.ObjectCache`)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def get(self, resource: Resource, key: str) -> _Object | None:
        return self._store.get(resource, key)

    def list(self, resource: Resource, namespace: str | None = None,
             label_selector: str | Mapping[str, str] | LabelSelector | None = None) -> _Objects:
        selector = LabelSelector.parse(label_selector)
        return [copy.deepcopy(obj) for key, obj in sorted(self._store.of(resource).items())
                if (namespace is None or obj["metadata"].get("namespace") == namespace)
                and selector.matches_object(obj)]

    def list_owned(self, resource: Resource, owner_uid: str) -> _Objects:
        return [copy.deepcopy(obj) for _, obj in sorted(self._store.of(resource).items())
                if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def keys(self, resource: Resource, namespace: str | None = None) -> _Keys:
        return [object_key(obj) for obj in self.list(resource, namespace)]


class FakeClient(Client):
    """A :class:`~shard_operator.client.Client` whose verbs act on an :class:`ObjectStore`; see the module doc.

    ``patch_status``, ``add_finalizer`` and ``remove_finalizer`` are the real ones (they build a patch);
    every request is counted in ``counter`` as the real client counts it.
    """

    def __init__(self, store: ObjectStore, *, field_manager: str = "fake") -> None:  # no ApiClient: no server
        self.store = store
        self.counter = RequestCounter()
        self.field_manager = field_manager
        self.timeout = 0.0

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> _Object:
        self.counter.record("get", resource.name)
        self._path(resource, name, namespace)
        found = self.store.get(resource, f"{namespace}/{name}" if resource.namespaced else name)
        if found is None:
            raise NotFoundError(f"{resource.name} {name!r} not found", status=404, reason="NotFound")
        return found

    def create(self, resource: Resource, obj: _Object) -> _Object:
        self.counter.record("create", resource.name)
        meta = obj.get("metadata") or {}
        self._path(resource, None, meta.get("namespace"))
        if not meta.get("name") and meta.get("generateName"):
            obj = {**obj, "metadata": {**meta, "name": meta["generateName"] + uuid.uuid4().hex[:5]}}
        key = object_key(obj)
        self.store.check_injected(resource, key)
        if key in self.store.of(resource):
            raise ConflictError(f"{resource.name} {key!r} already exists", status=409, reason="AlreadyExists")
        obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                                   if k not in ("uid", "resourceVersion", "generation", "deletionTimestamp")}}
        created = self.store.put(resource, obj)
        self._record(Write("create", resource, key, copy.deepcopy(obj)))
        return created

    def patch(self, resource: Resource, obj: _Object, patch: _Body, *, content_type: str = "",
              subresource: str | None = None) -> _Object:
        self.counter.record("patch", f"{resource.name}/{subresource}" if subresource else resource.name)
        stored = self._stored(resource, obj)
        key = object_key(stored)
        self.store.check_injected(resource, key)
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise ValueError("a JSON patch is a list of operations")
            changed = apply_json_patch(stored, patch)
        else:
            if not isinstance(patch, dict):
                raise ValueError("a merge patch is an object")
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and str(wanted) != stored["metadata"]["resourceVersion"]:
                raise _conflict(resource, key)
            changed = merge_patch(stored, patch)
        if changed["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise _conflict(resource, key)
        result = self._updated(resource, stored, changed, status_only=subresource == "status")
        self._record(Write("patch", resource, key, copy.deepcopy(patch), subresource))
        return result

    def delete(self, resource: Resource, obj: _Object, *, precondition: bool = True,
               propagation_policy: str | None = None) -> _Object:
        self.counter.record("delete", resource.name)
        stored = self._stored(resource, obj)
        key, meta = object_key(stored), stored["metadata"]
        self.store.check_injected(resource, key)
        if precondition and (obj["metadata"].get("uid") != meta["uid"]
                             or obj["metadata"].get("resourceVersion") != meta["resourceVersion"]):
            raise _conflict(resource, key)
        self._record(Write("delete", resource, key, {"propagationPolicy": propagation_policy}))
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                return self.store.put(resource, stored)
            return stored
        self.store.remove(resource, key)
        return stored

    def request(self, verb: Verb, resource: Resource, path: str, *, body: _Body = None,
                content_type: str = "application/json", subresource: str | None = None) -> _Object:
        raise NotImplementedError(f"FakeClient serves the Client verbs only, not a raw {verb} of {path}")

    def _stored(self, resource: Resource, obj: _Object) -> _Object:
        meta = obj.get("metadata") or {}
        self._path(resource, meta.get("name"), meta.get("namespace"))
        stored = self.store.get(resource, object_key(obj))
        if stored is None:
            raise NotFoundError(f"{resource.name} {object_key(obj)!r} not found", status=404, reason="NotFound")
        return stored

    def _updated(self, resource: Resource, stored: _Object, changed: _Object, *, status_only: bool) -> _Object:
        if status_only:
            new = {**stored, "status": changed.get("status")}
        else:
            new = {**changed, "metadata": {**changed.get("metadata", {}),
                                           **{k: v for k, v in stored["metadata"].items() if k in _FIXED}}}
            new.pop("status", None)
            if "status" in stored:
                new["status"] = stored["status"]
            if _content(new) != _content(stored):
                new["metadata"]["generation"] = int(stored["metadata"].get("generation") or 0) + 1
        if new.get("status") is None:
            new.pop("status", None)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.store.remove(resource, object_key(new))
            return new
        return self.store.put(resource, new)

    def _record(self, write: Write) -> None:
        if write.resource != EVENTS:  # events are read from FakeContext.events
            self.store.writes.append(write)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``patch`` merged into a copy of ``target``; None removes a key, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def apply_json_patch(target: _Object, operations: list[dict[str, Any]]) -> _Object:
    """RFC 6902 ``add``, ``remove``, ``replace`` and ``test`` on a copy of ``target``; a failed ``test``
    raises ConflictError (as the API server answers a stale ``resourceVersion`` test)."""
    doc = copy.deepcopy(target)
    for op in operations:
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if kind == "test":
            actual = node[int(last)] if isinstance(node, list) else node.get(last)
            if actual != op["value"]:
                raise ConflictError(f"JSON patch test failed at {op['path']}", status=409, reason="Conflict")
        elif kind == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if kind == "add":
                    node.insert(index, value)
                else:
                    node[index] = value
            else:
                node[last] = value
        else:
            raise ValueError(f"the fake API does not apply JSON patch op {kind!r}")
    return doc


def _content(obj: _Object) -> _Object:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _conflict(resource: Resource, key: str) -> ConflictError:
    return ConflictError(f"Operation cannot be fulfilled on {resource.name} {key!r}: the object has been "
                         "modified; please apply your changes to the latest version and try again",
                         status=409, reason="Conflict")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
