"""Per-change convergence: when the watch first shows each create or spec update reflected in the status.

Where it sits: beside the load generator in ``loadtest.runner``. The load generator hands every change
(key, the generation the API server gave it, when) to :class:`Convergence`; the lab's own informer hands
it every object it sees; a change converges the first time its object's status shows its generation:
that gap is the create/update -> status latency.

"Converged" is a JSONPath into the object (default ``{.status.observedGeneration}``) compared with
``metadata.generation`` (at least equal), or, with ``converged_value``, compared with a fixed string.
Supported JSONPath: ``.field``, ``[n]`` and ``[?(@.field=="value")]`` filters, e.g.
``{.status.conditions[?(@.type=="Ready")].observedGeneration}``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "Convergence", "jsonpath", "percentile"]

_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_\-]+)\s*==\s*[\"']?([^\"'\)]*)[\"']?\)\]")


def jsonpath(obj: Any, expression: str) -> Any:
    """Evaluate the lab's JSONPath subset; None when a step finds nothing."""
    path = expression.strip().removeprefix("{").removesuffix("}").strip()
    position = 0
    current = obj
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {expression!r} at {path[position:]!r}")
        position = match.end()
        field, index, filter_field, filter_value = match.groups()
        if current is None:
            return None
        if field is not None:
            current = current.get(field) if isinstance(current, dict) else None
        elif index is not None:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else None
        else:
            items = current if isinstance(current, list) else []
            current = next((item for item in items if isinstance(item, dict)
                            and str(item.get(filter_field)) == filter_value), None)
    return current


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


@dataclass
class Change:
    key: str
    generation: int
    at: float
    kind: str  # create | update
    converged_at: float | None = None
    deleted: bool = False  # the object was deleted before this change converged

    @property
    def latency(self) -> float | None:
        return None if self.converged_at is None else max(0.0, self.converged_at - self.at)


class Convergence:
    """Resolves changes to convergence times from watch events (thread-safe)."""

    def __init__(self, jsonpath_expr: str, converged_value: str | None = None) -> None:
        self.expr, self.value = jsonpath_expr, converged_value
        self.changes: list[Change] = []
        self._pending: dict[str, list[Change]] = defaultdict(list)
        self._converged: dict[str, tuple[int, float]] = {}
        self.finals: dict[str, tuple[int, int | None]] = {}
        self._lock = threading.Lock()

    def converged_generation(self, obj: dict[str, Any]) -> int | None:
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        found = jsonpath(obj, self.expr)
        if self.value is not None:
            return generation if found is not None and str(found) == self.value else None
        try:
            return int(found) if found is not None else None
        except (TypeError, ValueError):
            return None

    def changed(self, key: str, generation: int, kind: str, at: float | None = None) -> None:
        change = Change(key, generation, at if at is not None else time.time(), kind)
        with self._lock:
            self.changes.append(change)
            seen = self._converged.get(key)
            if seen and seen[0] >= generation:
                change.converged_at = seen[1]
            else:
                self._pending[key].append(change)

    def observed(self, key: str, obj: dict[str, Any] | None) -> None:
        now = time.time()
        with self._lock:
            if obj is None:
                self.finals.pop(key, None)
                self._converged.pop(key, None)
                for change in self._pending.pop(key, []):
                    change.deleted = True
                return
            converged = self.converged_generation(obj)
            self.finals[key] = (int(obj["metadata"].get("generation") or 0), converged)
            if converged is None:
                return
            previous = self._converged.get(key)
            if previous is None or converged > previous[0]:
                self._converged[key] = (converged, now)
            pending = self._pending.get(key, [])
            for change in [c for c in pending if c.generation <= converged]:
                change.converged_at = now
                pending.remove(change)

    def outstanding(self, ignore: set[str] = frozenset()) -> int:  # type: ignore[assignment]
        with self._lock:
            return sum(len(v) for k, v in self._pending.items() if k not in ignore)

    def converged_count(self) -> int:
        with self._lock:
            return sum(1 for change in self.changes if change.converged_at is not None)
