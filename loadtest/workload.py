"""The lab's sample workload: a small operator whose every reconcile is recorded.

Where it sits: the operator under test when no ``--operator-cmd`` is given. The runner starts it as
``shard-operator run --app loadtest.workload:operator``; each worker process records every reconcile
(``loadtest.recorder``, sink in ``$LOADTEST_RECORD``) so the checker can prove I1-I4.

It reconciles ``LoadObjects`` (``loadobjects.loadtest.shard-operator.dev``): it reads the object from
the shared cache, spends ``$LOADTEST_WORK_S`` seconds (default 0.005) as if doing work, and writes
``status.observedGeneration`` with optimistic concurrency. An object with ``spec.invalid: true`` fails
every reconcile (the "burst of invalid objects" fault): its key must back off, not hot-loop (I4). A
write refused because the worker's claim was lost (a fenced client) is recorded as ``fenced``. Each
reconcile also records whether it sent its status write (``wrote``): one that failed after sending it
(a reset connection, a timeout) may have changed the object, so the checker does not call it fenced.

Written only against the public API (``Operator``, ``For``, ``Request``, ``Result``, ``ctx.get``,
``ctx.client.patch_status``, ``ctx.shard``), so it runs on any version of the library.
"""

from __future__ import annotations

import os
import time
from typing import Any

from loadtest.recorder import Recorder
from shard_operator import For, Operator, Request, Resource, Result
from shard_operator.client import open_crd
from shard_operator.errors import ClaimLostError, ConflictError

GROUP, VERSION, PLURAL, KIND = "loadtest.shard-operator.dev", "v1", "loadobjects", "LoadObject"
RESOURCE = Resource(GROUP, VERSION, PLURAL)
CRD: dict[str, Any] = open_crd(RESOURCE, KIND)
CONVERGED_JSONPATH = "{.status.observedGeneration}"

_recorder: tuple[int, Recorder | None] | None = None


class InvalidObjectError(Exception):
    """Raised for ``spec.invalid: true``: the object can never be reconciled."""


def recorder() -> Recorder | None:
    """This process's recorder, opened on first use (after the fork), or None when not recording."""
    global _recorder
    if _recorder is None or _recorder[0] != os.getpid():
        _recorder = (os.getpid(), Recorder.from_env())
    return _recorder[1]


def claim_id(claim: Any) -> str | None:
    """A printable identity of the context's claim, whatever the library version gives (None, a token, or
    a claim object: then the monotonic time it was handed out or last renewed, as this worker saw it)."""
    if claim is None or isinstance(claim, str):
        return claim
    for name in ("token", "owner"):
        if isinstance(getattr(claim, name, None), str):
            return str(getattr(claim, name))
    confirmed = getattr(claim, "confirmed_at", None)
    return f"confirmed@{confirmed:.3f}" if isinstance(confirmed, float) else type(claim).__name__


def reconcile(request: Request, ctx: Any) -> Result | None:
    rec = recorder()
    key = f"{request.namespace}/{request.name}" if request.namespace else request.name
    rid = rec.start(key, shard=getattr(ctx, "shard", None), claim=claim_id(getattr(ctx, "claim", None))) if rec else ""
    outcome, seen, wrote = "error", None, False
    try:
        obj = ctx.get(request)
        if obj is None:
            outcome = "gone"
            return None
        seen = int(obj["metadata"].get("generation") or 0)
        if (obj.get("spec") or {}).get("invalid"):
            raise InvalidObjectError(f"{key}: spec.invalid is set")
        time.sleep(float(os.environ.get("LOADTEST_WORK_S", "0.005")))
        if (obj.get("status") or {}).get("observedGeneration") == seen:
            outcome = "noop"
            return None
        try:
            wrote = True  # from here on the write may reach the API server
            ctx.client.patch_status(RESOURCE, obj, {"observedGeneration": seen})
        except ConflictError:
            outcome = "conflict"
            raise
        except ClaimLostError:  # fenced: the claim was lost before the write, which was not sent
            outcome, wrote = "fenced", False
            raise
        outcome = "ok"
        return None
    finally:
        if rec:
            rec.end(rid, key, outcome=outcome, generation=seen, wrote=wrote)


operator = Operator(name="loadobjects", reconcile=reconcile, for_=For(RESOURCE, kind=KIND))


def manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A LoadObject manifest."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}
