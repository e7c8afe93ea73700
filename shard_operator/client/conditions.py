"""Status conditions and observed generation, with Kubernetes' semantics, on plain dicts.

A reconciler builds the status it wants with these helpers and writes it with
:meth:`~shard_operator.client.Client.patch_status`. They follow ``k8s.io/apimachinery/pkg/api/meta``
(``SetStatusCondition``): conditions are keyed by ``type``; ``lastTransitionTime`` moves only when
the condition's ``status`` changes, so an unchanged condition produces an identical status and a
reconciler can skip the write altogether (the helpers say whether anything changed).
Pure functions: no API calls.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CONDITION_STATUSES",
    "find_condition",
    "generation",
    "is_condition_true",
    "is_observed",
    "observed_generation",
    "remove_condition",
    "set_condition",
]

CONDITION_STATUSES = ("True", "False", "Unknown")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # metav1.Time: RFC 3339, whole seconds


def _status_of(obj_or_status: dict[str, Any]) -> dict[str, Any]:
    """Accept an object (with ``status``) or a status dict itself."""
    if "metadata" in obj_or_status or "apiVersion" in obj_or_status:
        status = obj_or_status.get("status")
        return status if isinstance(status, dict) else {}
    return obj_or_status


def find_condition(obj_or_status: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    """The condition of ``condition_type`` in an object's status (or in a status dict), or None."""
    for condition in _status_of(obj_or_status).get("conditions") or []:
        if condition.get("type") == condition_type:
            return dict(condition)
    return None


def is_condition_true(obj_or_status: dict[str, Any], condition_type: str) -> bool:
    """True when the condition exists and its status is ``"True"``."""
    condition = find_condition(obj_or_status, condition_type)
    return condition is not None and condition.get("status") == "True"


def set_condition(status: dict[str, Any], condition_type: str, condition_status: str | bool, reason: str,
                  message: str = "", observed_generation: int | None = None, *,
                  now: str | None = None) -> bool:
    """Set a condition in ``status["conditions"]`` in place; True when anything changed.

    ``condition_status`` is ``"True"``, ``"False"``, ``"Unknown"`` (or a bool). A new condition, or
    one whose status changes, gets ``lastTransitionTime = now`` (the current UTC time when None);
    otherwise its transition time is kept and only ``reason``, ``message`` and
    ``observedGeneration`` are updated. ``reason`` is required, as for ``metav1.Condition``.
    """
    if isinstance(condition_status, bool):
        condition_status = "True" if condition_status else "False"
    if condition_status not in CONDITION_STATUSES:
        raise ValueError(f"condition status must be one of {CONDITION_STATUSES}, not {condition_status!r}")
    if not reason:
        raise ValueError("a condition needs a reason (a CamelCase word)")
    wanted: dict[str, Any] = {"type": condition_type, "status": condition_status, "reason": reason,
                              "message": message}
    if observed_generation is not None:
        wanted["observedGeneration"] = observed_generation
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        conditions = status["conditions"] = []
    for index, current in enumerate(conditions):
        if current.get("type") != condition_type:
            continue
        transition = current.get("lastTransitionTime")
        if current.get("status") != condition_status or not transition:
            transition = now or _now()
        updated = {**current, **wanted, "lastTransitionTime": transition}
        if observed_generation is None:
            updated.pop("observedGeneration", None)
        if updated == current:
            return False
        conditions[index] = updated
        return True
    conditions.append({**wanted, "lastTransitionTime": now or _now()})
    return True


def remove_condition(status: dict[str, Any], condition_type: str) -> bool:
    """Remove the condition of ``condition_type`` from ``status`` in place; True when it was there."""
    conditions = status.get("conditions") or []
    kept = [c for c in conditions if c.get("type") != condition_type]
    if len(kept) == len(conditions):
        return False
    status["conditions"] = kept
    return True


def generation(obj: dict[str, Any]) -> int | None:
    """``metadata.generation``: bumped by the API server on every change to the spec."""
    value = (obj.get("metadata") or {}).get("generation")
    return int(value) if value is not None else None


def observed_generation(obj: dict[str, Any]) -> int | None:
    """``status.observedGeneration``: the generation the status was last computed for."""
    value = _status_of(obj).get("observedGeneration")
    return int(value) if value is not None else None


def is_observed(obj: dict[str, Any]) -> bool:
    """True when the status describes the current spec (observedGeneration >= generation)."""
    current, observed = generation(obj), observed_generation(obj)
    return current is None or (observed is not None and observed >= current)
