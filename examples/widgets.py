"""An example operator: Widgets (``widgets.example.shard-operator.dev``) get a status that says which
generation of their spec was seen, and a ``Ready`` condition.

Run it against the embedded control plane::

    eval "$(shard-operator testenv env --export)"
    python -m examples.widgets install          # the CRD
    shard-operator run --app examples.widgets:operator --workers 2 --redis-url "$REDIS_URL"

``owning`` keeps a ConfigMap owned by each Widget (``Owns``). ``measuring`` computes ``status.area``
in a background job (RQ), so a slow computation never blocks the reconcile loop. ``finalizing`` is
``operator`` with a finalizer: deleting a Widget runs its clean-up once (recorded as a ``CleanedUp``
Event) before the API server removes it.

The reconciler reads the Widget only from the shared cache (``ctx.get``) and writes only its status
(and finalizers) through ``ctx.client``, with optimistic concurrency: a stale read ends in a 409, which
requeues the key with backoff, and the next reconcile reads the newer object.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from shard_operator import Context, For, Operator, Reconciler, Request, Resource, Result, client
from shard_operator.client import find_condition, generation, open_crd, set_condition, set_controller_reference
from shard_operator.jobs import task

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

GROUP, VERSION, PLURAL, KIND = "example.shard-operator.dev", "v1", "widgets", "Widget"
WIDGETS = Resource(GROUP, VERSION, PLURAL)
FINALIZER = f"{GROUP}/cleanup"

CRD: dict[str, Any] = open_crd(WIDGETS, KIND)


def make_reconcile(finalizer: bool) -> Reconciler:
    def reconcile(request: Request, ctx: Context) -> Result | None:
        widget = ctx.get(request)
        if widget is None:  # deleted: nothing left to do
            return None
        meta = widget["metadata"]
        if meta.get("deletionTimestamp"):
            if finalizer and FINALIZER in (meta.get("finalizers") or []):
                ctx.recorder.normal(widget, "CleanedUp", f"cleaned up after {request}")
                ctx.client.remove_finalizer(WIDGETS, widget, FINALIZER)
            return None
        if finalizer:
            widget = ctx.client.add_finalizer(WIDGETS, widget, FINALIZER)
        current = generation(widget)
        status = dict(widget.get("status") or {})
        ready = find_condition(status, "Ready")
        if status.get("observedGeneration") == current and ready and ready.get("observedGeneration") == current:
            return None  # level-based: the status already describes this spec
        status["observedGeneration"] = current
        set_condition(status, "Ready", True, "Reconciled", f"spec generation {current} applied",
                      observed_generation=current)
        ctx.client.patch_status(WIDGETS, widget, {"observedGeneration": current,
                                                  "conditions": status["conditions"]})
        return None

    return reconcile


@task("widgets.measure")
def measure(size: int, seconds: float) -> dict[str, int]:
    """A slow computation that must not block the reconcile loop: it runs as a background job."""
    time.sleep(seconds)
    return {"area": size * size}


def reconcile_with_job(request: Request, ctx: Context) -> Result | None:
    """Writes ``status.area`` from a background job; each spec generation gets its own job."""
    widget = ctx.get(request)
    if widget is None:
        return None
    current = generation(widget)
    status = widget.get("status") or {}
    if status.get("observedGeneration") == current and "area" in status:
        return None
    spec = widget.get("spec") or {}
    state = ctx.job("measure")
    if state is None:  # returns at once; the job's end brings this key back
        ctx.enqueue_job("widgets.measure", int(spec.get("size", 0)), float(spec.get("seconds", 0.5)),
                        name="measure", retry=1)
        return None
    if not state.done:
        return None
    if state.succeeded:
        ctx.client.patch_status(WIDGETS, widget, {"observedGeneration": current, "area": state.result["area"]})
    else:
        ctx.client.patch_status(WIDGETS, widget, {"observedGeneration": current, "error": state.error})
    return None


CONFIGMAPS = Resource("", "v1", "configmaps")


def reconcile_owned(request: Request, ctx: Context) -> Result | None:
    """Keeps a ConfigMap ``<name>-data`` owned by each Widget with ``data.size`` = the Widget's size; a
    deleted or edited ConfigMap wakes its owner (``Owns``) and is put back."""
    widget = ctx.get(request)
    if widget is None:
        return None  # the API server's garbage collector removes owned objects
    wanted = {"size": str((widget.get("spec") or {}).get("size", 0))}
    owned = ctx.cache.list_owned(CONFIGMAPS, widget["metadata"]["uid"])
    current = next((cm for cm in owned if cm["metadata"]["name"] == f"{request.name}-data"), None)
    if current is None:
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "data": wanted,
                     "metadata": {"name": f"{request.name}-data", "namespace": request.namespace}}
        set_controller_reference(configmap, widget)
        ctx.client.create(CONFIGMAPS, configmap)
    elif current.get("data") != wanted:
        ctx.client.patch(CONFIGMAPS, current, {"data": wanted})
    return None


operator = Operator(name="widgets", reconcile=make_reconcile(finalizer=False), for_=For(WIDGETS, kind=KIND))
_for_widgets = For(WIDGETS, kind=KIND)
owning = Operator(name="widgets-owning", reconcile=reconcile_owned, for_=_for_widgets,
                  owns=[_for_widgets.owns(CONFIGMAPS)])
measuring = Operator(name="widgets-measuring", reconcile=reconcile_with_job, for_=For(WIDGETS, kind=KIND))
finalizing = Operator(name="widgets-finalizing", reconcile=make_reconcile(finalizer=True),
                      for_=For(WIDGETS, kind=KIND))


def install_crd(api_client: ApiClient, timeout: float = 30.0) -> None:
    """Create the Widget CRD (if missing) and wait until the API server serves it."""
    client.install_crd(api_client, CRD, timeout=timeout)


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A Widget manifest."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


if __name__ == "__main__":  # python -m examples.widgets install
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m examples.widgets install")
    from shard_operator.kube import load_api_client

    with load_api_client() as api:
        install_crd(api)
    print(f"installed {PLURAL}.{GROUP}")
