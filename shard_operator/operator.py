"""The operator definition: what an author hands to ``shard-operator run --app module:attr``.

An :class:`Operator` names the controller, its reconcile function and what it watches (the primary
resource with :class:`~shard_operator.handler.For`, owned objects with ``Owns``, anything else with
``Watches``), plus the scope of the watches (namespaces, label and field selectors of the primary
resource). The manager (:mod:`shard_operator.manager`) turns it into one informer per watched resource
in the leader and one reconcile loop per worker process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shard_operator.errors import ConfigError
from shard_operator.handler import EventHandler, For
from shard_operator.keys import Keys
from shard_operator.source import Resource, Transform, drop_managed_fields

if TYPE_CHECKING:
    from shard_operator.worker.runner import ReconcileFn

__all__ = ["Operator"]


@dataclass
class Operator:
    """An operator: ``reconcile(request, ctx)`` for the keys of ``for_`` and of its other handlers.

    - ``name`` is the controller name: it labels metrics, names the Redis keys of the work queue
      (``so:{<name>}:…``), the default Lease (``<name>-leader``) and the field manager of writes.
    - ``owns`` and ``watches`` are extra handlers; each resource they name gets its own informer and
      its own slice of the shared cache, so a reconciler can read owned objects with
      ``ctx.cache.list_owned(resource, uid)``.
    - ``namespaces`` (None: all), ``label_selector`` and ``field_selector`` scope the primary
      resource's watch on the server; the command line may override them.
    - ``transform`` runs on every object before it is cached (default: drop ``managedFields``).
    - ``rbac_rules`` are ClusterRole rules ``shard-operator manifests`` adds to the ones it derives from the
      handlers (``Watches`` resources are read-only there): for example ``{"apiGroups": [""], "resources":
      ["secrets"], "verbs": ["update"]}`` for an operator that writes a kind it only watches.
    """

    name: str
    reconcile: ReconcileFn
    for_: For
    owns: Sequence[EventHandler] = ()
    watches: Sequence[EventHandler] = ()
    namespaces: Sequence[str] | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    transform: Transform | None = field(default=drop_managed_fields)
    rbac_rules: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        try:
            Keys.for_controller(self.name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not callable(self.reconcile):
            raise ConfigError(f"operator {self.name}: reconcile must be callable")
        if not isinstance(self.for_, For):
            raise ConfigError(f"operator {self.name}: for_ must be a For(...) handler")
        if self.namespaces is not None:
            self.namespaces = list(self.namespaces)
        for rule in self.rbac_rules:
            if not all(isinstance(rule.get(key), list) and rule[key] for key in ("apiGroups", "resources", "verbs")):
                raise ConfigError(f"operator {self.name}: an rbac_rules entry needs non-empty apiGroups, resources "
                                  f"and verbs lists: {dict(rule)}")

    @property
    def resource(self) -> Resource:
        """The primary resource: the kind whose keys are reconciled."""
        return self.for_.resource

    @property
    def handlers(self) -> list[EventHandler]:
        return [self.for_, *self.owns, *self.watches]

    def handlers_by_resource(self) -> dict[Resource, list[EventHandler]]:
        """The handlers grouped by the resource they watch, the primary first (one informer each)."""
        grouped: dict[Resource, list[EventHandler]] = {}
        for handler in self.handlers:
            grouped.setdefault(handler.resource, []).append(handler)
        return grouped
