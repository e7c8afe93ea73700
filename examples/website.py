"""A sample operator that uses every feature: ``Website`` objects become a ConfigMap, a Deployment and a
Service.

Run it against the embedded control plane::

    eval "$(shard-operator testenv env --export)"
    python -m examples.website install        # the CRD, generated from examples/website_content.py
    shard-operator run --app examples.website:operator --workers 2 --redis-url "$REDIS_URL"

One reconcile, level-based (it compares what is with what should be and writes only the difference):

1. a Website being deleted is unpublished (its Service, Deployment and ConfigMap deleted, an ``Unpublished``
   Event recorded) and its finalizer removed; otherwise the finalizer is added first;
2. the spec is read into :class:`~examples.website_content.WebsiteSpec`; the CRD schema already rejected
   invalid specs, and what it cannot catch becomes a ``Degraded`` condition with a message;
3. rendering and checking the pages is slow, so it runs as a background job (``website.render``), once per
   spec generation; its end brings the key back, and problems found (broken links, duplicate paths, too
   large) become ``Degraded`` — never a retry loop: the next spec change renders again;
4. the ConfigMap (rendered pages), the Deployment (nginx, rolled when the content changes) and the Service
   are created or patched, each owned by the Website (``Owns`` wakes it when someone edits or deletes one);
5. the status gets ``observedGeneration``, the URL, the page count, the Deployment's available replicas and
   the ``Ready`` / ``Degraded`` conditions, written only when it changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from typing import Any

from examples.website_content import WEBSITES, WebsiteSpec, file_name, render_site
from shard_operator import Context, For, Operator, Request, Resource, Result
from shard_operator.client import controller_reference, generation, set_condition, set_controller_reference
from shard_operator.errors import NotFoundError
from shard_operator.manifests import SpecError, load

__all__ = ["CONFIGMAPS", "DEPLOYMENTS", "SERVICES", "WEBSITES", "operator", "reconcile", "render_site"]

CONFIGMAPS = Resource("", "v1", "configmaps")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
CONTENT_HASH = "website.example.shard-operator.dev/content"
APPLIED_HASH = "website.example.shard-operator.dev/applied"
_JOB = "render"


def _cached(ctx: Context, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
    return ctx.cache.get(resource, f"{namespace}/{name}")


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "website", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/managed-by": "shard-operator"}


def desired_objects(website: dict[str, Any], spec: WebsiteSpec, files: dict[str, str],
                    checksum: str) -> list[tuple[Resource, dict[str, Any]]]:
    """The ConfigMap, Deployment and Service of a published site, each owned by ``website``."""
    name, namespace = website["metadata"]["name"], website["metadata"]["namespace"]
    labels = _labels(name)
    configmap: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "data": files,
                 "metadata": {"name": f"{name}-content", "namespace": namespace, "labels": labels,
                              "annotations": {CONTENT_HASH: checksum}}}
    items = [{"key": file_name(p.path), "path": p.path.strip("/") + ".html" if p.path != "/" else "index.html"}
             for p in spec.pages]
    container = {
        "name": "nginx", "image": spec.image, "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "content", "mountPath": "/usr/share/nginx/html", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}]}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": spec.replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": {CONTENT_HASH: checksum}},
                              "spec": {"containers": [container], "automountServiceAccountToken": False,
                                       "volumes": [{"name": "content", "configMap": {"name": f"{name}-content",
                                                                                     "items": items}},
                                                   {"name": "tmp", "emptyDir": {}}]}}}}
    service: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    objects = [(CONFIGMAPS, configmap), (DEPLOYMENTS, deployment), (SERVICES, service)]
    for _, obj in objects:
        set_controller_reference(obj, website)
        # What we want, hashed: an owned object is patched only when this differs (or it drifted).
        wanted = json.dumps({k: v for k, v in obj.items() if k != "metadata"}, sort_keys=True).encode()
        annotations: dict[str, str] = obj["metadata"].setdefault("annotations", {})
        annotations[APPLIED_HASH] = hashlib.sha256(wanted).hexdigest()[:16]
    return objects


class ObjectInTheWayError(Exception):
    """An object with the name the Website needs exists and is not the Website's: it is never taken over.
    The reconcile fails (and backs off) until someone removes or renames it."""


def _apply(ctx: Context, resource: Resource, wanted: dict[str, Any]) -> dict[str, Any]:
    """Create ``wanted``, or patch the cached object when its applied hash (or replicas) differ."""
    meta = wanted["metadata"]
    current = _cached(ctx, resource, meta["namespace"], meta["name"])
    if current is None:
        return ctx.client.create(resource, wanted)  # ConflictError if the cache lags: retried with backoff
    owner = controller_reference(current)
    if owner is None or owner["uid"] != meta["ownerReferences"][0]["uid"]:
        raise ObjectInTheWayError(f"{resource.plural} {meta['namespace']}/{meta['name']} exists and is not owned by "
                                  f"this Website")
    applied = (current["metadata"].get("annotations") or {}).get(APPLIED_HASH)
    drifted = resource == DEPLOYMENTS and (current.get("spec") or {}).get("replicas") != wanted["spec"]["replicas"]
    if applied == meta["annotations"][APPLIED_HASH] and not drifted:
        return current
    patch = {**{k: v for k, v in wanted.items() if k not in ("apiVersion", "kind")},
             "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
    return ctx.client.patch(resource, current, patch)


def _unpublish(ctx: Context, website: dict[str, Any]) -> None:
    name, namespace = website["metadata"]["name"], website["metadata"]["namespace"]
    for resource, object_name in ((SERVICES, name), (DEPLOYMENTS, name), (CONFIGMAPS, f"{name}-content")):
        current = _cached(ctx, resource, namespace, object_name)
        if current is not None:
            with contextlib.suppress(NotFoundError):
                ctx.client.delete(resource, current)
    ctx.recorder.normal(website, "Unpublished", f"deleted the Service, Deployment and ConfigMap of {name}")
    ctx.client.remove_finalizer(WEBSITES.resource, website, WEBSITES.finalizer or "")


def _write_status(ctx: Context, website: dict[str, Any], status: dict[str, Any]) -> None:
    if status != (website.get("status") or {}):
        ctx.client.patch_status(WEBSITES.resource, website, status)


def _degraded(ctx: Context, website: dict[str, Any], status: dict[str, Any], reason: str, message: str) -> None:
    current = generation(website)
    status["observedGeneration"] = current
    set_condition(status, "Degraded", True, reason, message[:1000], observed_generation=current)
    if not any(c["type"] == "Ready" for c in status.get("conditions", [])):
        set_condition(status, "Ready", False, reason, "the site was never published", observed_generation=current)
    _write_status(ctx, website, status)


def reconcile(request: Request, ctx: Context) -> Result | None:
    website = ctx.get(request)
    if website is None:
        return None  # gone: the garbage collector removes what it owned
    finalizer = WEBSITES.finalizer or ""
    if website["metadata"].get("deletionTimestamp"):
        if finalizer in (website["metadata"].get("finalizers") or []):
            _unpublish(ctx, website)
        return None
    website = ctx.client.add_finalizer(WEBSITES.resource, website, finalizer)
    status = json.loads(json.dumps(website.get("status") or {}))
    current = generation(website)
    try:
        spec = load(WebsiteSpec, website.get("spec"))
    except SpecError as exc:
        _degraded(ctx, website, status, "InvalidSpec", str(exc))
        return None
    job = ctx.job(_JOB)
    if job is None:  # one render per generation; its end wakes this key
        ctx.enqueue_job("website.render", [{"path": p.path, "title": p.title, "body": p.body} for p in spec.pages],
                        name=_JOB, timeout=60, retry=1)
        return None
    if not job.done:
        return None
    if not job.succeeded:
        _degraded(ctx, website, status, "RenderFailed", f"rendering the pages failed: {job.error}")
        return None
    if job.result["problems"]:
        _degraded(ctx, website, status, "ContentInvalid", "; ".join(job.result["problems"]))
        return None
    try:
        applied = {resource.plural: _apply(ctx, resource, obj)
                   for resource, obj in desired_objects(website, spec, job.result["files"], job.result["checksum"])}
    except ObjectInTheWayError as exc:
        _degraded(ctx, website, status, "ObjectInTheWay", str(exc))
        raise  # an error: retried with exponential backoff until the object is gone
    meta = website["metadata"]
    status.update(observedGeneration=current, url=f"http://{meta['name']}.{meta['namespace']}.svc",
                  pages=len(spec.pages), checksum=job.result["checksum"],
                  availableReplicas=(applied["deployments"].get("status") or {}).get("availableReplicas", 0))
    set_condition(status, "Degraded", False, "Published", "", observed_generation=current)
    set_condition(status, "Ready", True, "Published", f"{len(spec.pages)} pages published",
                  observed_generation=current)
    _write_status(ctx, website, status)
    return None


_for_websites = For(WEBSITES.resource, kind=WEBSITES.kind)
operator = Operator(name="websites", reconcile=reconcile, for_=_for_websites,
                    owns=[_for_websites.owns(CONFIGMAPS), _for_websites.owns(DEPLOYMENTS),
                          _for_websites.owns(SERVICES)])


SAMPLE = WEBSITES.object("hello", "default", replicas=2, pages=[
    {"path": "/", "title": "Hello", "body": "A site served by nginx, kept by shard-operator.\n\n[About](/about)"},
    {"path": "/about", "title": "About", "body": "Rendered in a background job, checked for broken links."}])

if __name__ == "__main__":  # python -m examples.website install | sample
    if sys.argv[1:] == ["sample"]:
        print(json.dumps(SAMPLE, indent=2))  # kubectl apply -f - accepts JSON
        sys.exit(0)
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m examples.website install | sample")
    from shard_operator.kube import load_api_client

    with load_api_client() as api:
        WEBSITES.install(api)
    print(f"installed {WEBSITES.plural}.{WEBSITES.group}")
