"""The Website example's model and its slow step: the typed spec, and rendering plus checking the pages.

Where it sits: :mod:`examples.website` reconciles ``Website`` objects; the CRD's schema comes from the
dataclasses here (:class:`WebsiteSpec`, :class:`WebsiteStatus`), and :func:`render_site` runs as a
background job (RQ) because rendering and checking every page is the slow part of a reconcile. What the
schema cannot catch — a link to a page that does not exist, two pages with one path, a site too large for
a ConfigMap — comes back from the job as ``problems``, which the reconciler reports in a ``Degraded``
condition.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from shard_operator.jobs import task
from shard_operator.manifests import Column, CustomResource, openapi

__all__ = ["WEBSITES", "Page", "WebsiteSpec", "WebsiteStatus", "file_name", "render_site"]

NGINX_IMAGE = "nginxinc/nginx-unprivileged:1.27.3-alpine"
#: A ConfigMap holds at most 1 MiB; leave room for its metadata.
MAX_SITE_BYTES = 900 * 1024
_LINK = re.compile(r"\[([^\]]+)\]\((/[^)\s]*)\)")


@dataclass(frozen=True)
class Page:
    """One page: its URL path and its text (paragraphs, ``# headings`` and ``[links](/path)``)."""

    path: str = field(metadata=openapi(pattern=r"^/([a-z0-9-]+(/[a-z0-9-]+)*)?$", max_length=128,
                                       description="URL path, '/' for the home page"))
    title: str = field(metadata=openapi(min_length=1, max_length=200))
    body: str = field(default="", metadata=openapi(max_length=65536,
                                                   description="text; blank lines separate paragraphs"))


@dataclass(frozen=True)
class WebsiteSpec:
    """A static web site served by nginx."""

    pages: list[Page] = field(metadata=openapi(min_items=1, max_items=50))
    replicas: int = field(default=1, metadata=openapi(minimum=0, maximum=20, description="nginx pods serving the site"))
    image: str = field(default=NGINX_IMAGE, metadata=openapi(
        pattern=r"^[^:@\s]+(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$",
        description="an nginx image that listens on 8080 as a non-root user"))


@dataclass(frozen=True)
class Condition:
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = field(default=None, metadata=openapi(format="date-time"))
    observed_generation: int | None = None


@dataclass(frozen=True)
class WebsiteStatus:
    """What the operator last did with the spec."""

    observed_generation: int | None = None
    url: str | None = None
    pages: int | None = None
    checksum: str | None = None
    available_replicas: int | None = None
    conditions: list[Condition] = field(default_factory=list)


WEBSITES = CustomResource(
    group="example.shard-operator.dev", version="v1", kind="Website", spec=WebsiteSpec, status=WebsiteStatus,
    short_names=["site"], finalizer="example.shard-operator.dev/unpublish",
    description="A static web site: pages rendered into a ConfigMap and served by an nginx Deployment.",
    columns=[Column("Pages", ".status.pages", "integer"),
             Column("Replicas", ".spec.replicas", "integer"),
             Column("Available", ".status.availableReplicas", "integer"),
             Column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
             Column("Degraded", '.status.conditions[?(@.type=="Degraded")].reason', priority=1),
             Column("URL", ".status.url", priority=1)],
)


def file_name(path: str) -> str:
    """The ConfigMap key of a page: ``/`` → ``index.html``, ``/docs/intro`` → ``docs.intro.html``."""
    return "index.html" if path == "/" else path.strip("/").replace("/", ".") + ".html"


def _render_page(page: dict[str, Any]) -> str:
    blocks = []
    for block in re.split(r"\n\s*\n", page.get("body", "").strip()):
        if not block:
            continue
        text = _LINK.sub(lambda m: f'<a href="{m[2]}">{m[1]}</a>', html.escape(block, quote=False))
        blocks.append(f"<h2>{text[2:]}</h2>" if block.startswith("# ") else f"<p>{text}</p>")
    title = html.escape(page["title"])
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
            f"<body><h1>{title}</h1>\n" + "\n".join(blocks) + "\n</body></html>\n")


@task("website.render")
def render_site(pages: list[dict[str, Any]]) -> dict[str, Any]:
    """Render every page to HTML and check the site: returns ``files`` (ConfigMap key → HTML), a
    ``checksum`` of them, and ``problems`` (empty when the site may be published)."""
    problems: list[str] = []
    paths = [p["path"] for p in pages]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        problems.append(f"pages share a path: {', '.join(duplicates)}")
    for page in pages:
        for target in _LINK.findall(page.get("body", "")):
            if target[1] not in paths:
                problems.append(f"page {page['path']} links to {target[1]}, which is not a page of the site")
    files = {file_name(p["path"]): _render_page(p) for p in pages}
    size = sum(len(text.encode()) for text in files.values())
    if size > MAX_SITE_BYTES:
        problems.append(f"the rendered site is {size} bytes; a ConfigMap holds at most {MAX_SITE_BYTES}")
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return {"files": files if not problems else {}, "checksum": digest.hexdigest()[:16], "problems": problems}
