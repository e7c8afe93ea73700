"""The KWOK scenario's operator: it watches Pods through server-side label and field selectors.

Where it sits: the operator under test of ``python -m loadtest kwok`` (``loadtest.kwok``), started as
``shard-operator run --app loadtest.podwatch:operator``. As in the guide's informer example, the leader
watches ``pods`` with ``label_selector`` ``app=loadtest`` and ``field_selector`` ``status.phase=Running``,
so the API server sends it only the matching pods: the others never reach the cache, the queue or a
worker. Each worker process records every reconcile (``loadtest.recorder``, sink in ``$LOADTEST_RECORD``)
so the checker can judge I1 and I2, and the scenario can prove no non-matching pod was reconciled.

A reconcile reads the pod from the shared cache and, unless it is already marked, writes the annotation
``loadtest.shard-operator.dev/reconciled: "<metadata.generation>"`` with a conditional merge patch
(``ctx.client.patch`` sends the ``resourceVersion`` it read: a stale read gets a 409, recorded as
``conflict``). The marker leaves the pod's status to KWOK.
"""

from __future__ import annotations

from typing import Any

from loadtest.recorder import Recorder
from loadtest.workload import claim_id, recorder
from shard_operator import For, Operator, Request, Resource, Result
from shard_operator.errors import ClaimLostError, ConflictError

__all__ = ["FIELD_SELECTOR", "LABEL_SELECTOR", "MARKER", "NAMESPACE", "PODS", "marked_generation", "operator"]

PODS = Resource("", "v1", "pods")
NAMESPACE = "kwok-load"
LABEL_SELECTOR = "app=loadtest"
FIELD_SELECTOR = "status.phase=Running"
MARKER = "loadtest.shard-operator.dev/reconciled"


def marked_generation(pod: dict[str, Any]) -> int | None:
    """The generation the operator's marker says it reconciled, or None when the pod is not marked."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(MARKER)
    return int(value) if value is not None else None


def reconcile(request: Request, ctx: Any) -> Result | None:
    rec: Recorder | None = recorder()
    key = f"{request.namespace}/{request.name}"
    rid = rec.start(key, shard=getattr(ctx, "shard", None), claim=claim_id(getattr(ctx, "claim", None))) if rec else ""
    outcome, seen = "error", None
    try:
        pod = ctx.get(request)
        if pod is None:
            outcome = "gone"
            return None
        seen = int(pod["metadata"].get("generation") or 0)
        if marked_generation(pod) == seen:
            outcome = "noop"
            return None
        try:
            ctx.client.patch(PODS, pod, {"metadata": {"annotations": {MARKER: str(seen)}}})
        except ConflictError:
            outcome = "conflict"
            raise
        except ClaimLostError:  # fenced: the claim was lost before the write, which was not sent
            outcome = "fenced"
            raise
        outcome = "ok"
        return None
    finally:
        if rec:
            rec.end(rid, key, outcome=outcome, generation=seen)


operator = Operator(name="podwatch", reconcile=reconcile, for_=For(PODS, kind="Pod"), namespaces=[NAMESPACE],
                    label_selector=LABEL_SELECTOR, field_selector=FIELD_SELECTOR)
