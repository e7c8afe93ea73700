"""The Website sample operator: its typed spec model, its content check, and the operator end to end on
the real API server and Redis (owned ConfigMap, Deployment and Service; conditions; the finalizer; an
invalid site becomes Degraded without a retry loop)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from examples.website import CONFIGMAPS, DEPLOYMENTS, SERVICES, WEBSITES
from examples.website_content import Page, WebsiteSpec, render_site
from shard_operator.client import Client, find_condition
from shard_operator.errors import NotFoundError
from shard_operator.manifests import SpecError, load, openapi, openapi_schema
from tests.deploy.operator_process import OperatorProcess
from tests.waiting import eventually


@dataclass(frozen=True)
class Inner:
    size: int = field(metadata=openapi(minimum=1))


@dataclass(frozen=True)
class Model:
    name: str
    inner: Inner
    labels: dict[str, str] = field(default_factory=dict)
    ratio: float = 0.5
    note: str | None = None


def test_a_dataclass_becomes_a_structural_schema_with_its_validation_and_defaults():
    schema = openapi_schema(Model)
    assert schema["required"] == ["name", "inner"]
    assert schema["properties"]["inner"] == {"type": "object", "properties": {"size": {"type": "integer",
                                                                                       "minimum": 1}},
                                             "required": ["size"]}
    assert schema["properties"]["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert schema["properties"]["ratio"] == {"type": "number", "default": 0.5}
    assert schema["properties"]["note"] == {"type": "string"}


def test_load_builds_the_typed_model_and_names_the_field_that_does_not_fit():
    assert load(Model, {"name": "a", "inner": {"size": 2}, "ratio": 1}) == Model("a", Inner(2), ratio=1.0)
    with pytest.raises(SpecError, match=r"spec\.inner\.size must be int"):
        load(Model, {"name": "a", "inner": {"size": "2"}})
    with pytest.raises(SpecError, match=r"spec\.name is required"):
        load(Model, {"inner": {"size": 2}})


def test_the_website_spec_loads_pages_in_order():
    spec = load(WebsiteSpec, {"pages": [{"path": "/", "title": "Home"}, {"path": "/a", "title": "A", "body": "x"}]})
    assert spec.pages == [Page("/", "Home"), Page("/a", "A", "x")] and spec.replicas == 1


def test_rendering_finds_broken_links_and_duplicate_paths_that_the_schema_cannot():
    ok = render_site([{"path": "/", "title": "Home", "body": "see [about](/about)"},
                      {"path": "/about", "title": "About", "body": "# Us\n\nwe <b>"}])
    assert ok["problems"] == []
    assert '<a href="/about">about</a>' in ok["files"]["index.html"]
    assert "<h2>Us</h2>" in ok["files"]["about.html"] and "&lt;b&gt;" in ok["files"]["about.html"]
    bad = render_site([{"path": "/", "title": "Home", "body": "[x](/missing)"}, {"path": "/", "title": "Again"}])
    assert bad["files"] == {}
    assert bad["problems"] == ["pages share a path: /", "page / links to /missing, which is not a page of the site"]


# -- end to end ---------------------------------------------------------------------------------------


@pytest.fixture
def website_operator(control_plane: Any, redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Client]:
    with control_plane.api_client() as api:
        WEBSITES.install(api)
        running = OperatorProcess(control_plane.kubeconfig, redis_url, namespace, tmp_path / "operator.log")
        try:
            yield Client(api, field_manager="website-tests")
        except BaseException:
            print(running.log.read_text(errors="replace")[-6000:])
            raise
        finally:
            running.close()


def condition(kube: Client, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
    return find_condition(kube.get(WEBSITES.resource, name, namespace), kind)


def gone(kube: Client, resource: Any, name: str, namespace: str) -> bool:
    try:
        kube.get(resource, name, namespace)
    except NotFoundError:
        return True
    return False


@pytest.mark.controlplane
@pytest.mark.redis
@pytest.mark.slow
def test_a_website_is_published_owned_reported_and_unpublished_by_its_finalizer(website_operator: Client,
                                                                                namespace: str) -> None:
    kube = website_operator
    pages = [{"path": "/", "title": "Home", "body": "[docs](/docs/intro)"},
             {"path": "/docs/intro", "title": "Intro", "body": "hello"}]
    kube.create(WEBSITES.resource, WEBSITES.object("site", namespace, pages=pages, replicas=2))

    def published() -> bool:
        ready = condition(kube, namespace, "site", "Ready")
        return bool(ready and ready["status"] == "True")

    eventually(published, 60, "the site to be published")
    site = kube.get(WEBSITES.resource, "site", namespace)
    assert site["status"]["observedGeneration"] == site["metadata"]["generation"]
    assert site["status"]["pages"] == 2 and site["status"]["url"] == f"http://site.{namespace}.svc"
    assert site["metadata"]["finalizers"] == [WEBSITES.finalizer]
    content = kube.get(CONFIGMAPS, "site-content", namespace)
    assert set(content["data"]) == {"index.html", "docs.intro.html"}
    deployment = kube.get(DEPLOYMENTS, "site", namespace)
    assert deployment["spec"]["replicas"] == 2
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]
    assert {"key": "docs.intro.html", "path": "docs/intro.html"} in volume["items"]
    for obj in (content, deployment, kube.get(SERVICES, "site", namespace)):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == site["metadata"]["uid"] and owner["controller"] is True

    # An owned object edited by hand is put back (Owns wakes the Website).
    kube.patch(DEPLOYMENTS, deployment, {"spec": {"replicas": 5}})
    eventually(lambda: kube.get(DEPLOYMENTS, "site", namespace)["spec"]["replicas"] == 2, 30,
               "the Deployment's replicas to be restored")

    # Deleting runs the finalizer: the owned objects go first, then the Website.
    kube.delete(WEBSITES.resource, site, precondition=False)
    eventually(lambda: gone(kube, WEBSITES.resource, "site", namespace), 30, "the Website to be deleted")
    for resource, name in ((SERVICES, "site"), (DEPLOYMENTS, "site"), (CONFIGMAPS, "site-content")):
        assert gone(kube, resource, name, namespace), name


@pytest.mark.controlplane
@pytest.mark.redis
@pytest.mark.slow
def test_a_site_with_a_broken_link_is_degraded_with_a_message_and_not_retried_in_a_loop(
        website_operator: Client, namespace: str) -> None:
    kube = website_operator
    kube.create(WEBSITES.resource, WEBSITES.object("broken", namespace, pages=[
        {"path": "/", "title": "Home", "body": "[gone](/nowhere)"}]))

    def degraded() -> dict[str, Any] | None:
        found = condition(kube, namespace, "broken", "Degraded")
        return found if found and found["status"] == "True" else None

    found = eventually(degraded, 60, "the Degraded condition")
    assert found["reason"] == "ContentInvalid"
    assert found["message"] == "page / links to /nowhere, which is not a page of the site"
    assert gone(kube, CONFIGMAPS, "broken-content", namespace)  # nothing broken is published
    resource_version = kube.get(WEBSITES.resource, "broken", namespace)["metadata"]["resourceVersion"]
    time.sleep(3)  # a hot loop would rewrite the status or keep reconciling
    assert kube.get(WEBSITES.resource, "broken", namespace)["metadata"]["resourceVersion"] == resource_version

    # Fixing the spec (a new generation) publishes it and clears Degraded.
    site = kube.get(WEBSITES.resource, "broken", namespace)
    kube.patch(WEBSITES.resource, site, {"spec": {"pages": [{"path": "/", "title": "Home", "body": "fixed"}]}})
    eventually(lambda: (condition(kube, namespace, "broken", "Degraded") or {}).get("status") == "False", 60,
               "Degraded to clear")


@pytest.mark.controlplane
@pytest.mark.redis
@pytest.mark.slow
def test_an_object_in_the_way_is_never_taken_over_and_the_site_publishes_once_it_is_gone(
        website_operator: Client, namespace: str) -> None:
    kube = website_operator
    kube.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"mine": "yes"},
                             "metadata": {"name": "taken-content", "namespace": namespace}})
    kube.create(WEBSITES.resource, WEBSITES.object("taken", namespace, pages=[{"path": "/", "title": "T"}]))
    found = eventually(lambda: condition(kube, namespace, "taken", "Degraded"), 60, "the Degraded condition")
    assert found["reason"] == "ObjectInTheWay" and "configmaps" in found["message"]
    assert kube.get(CONFIGMAPS, "taken-content", namespace)["data"] == {"mine": "yes"}
    kube.delete(CONFIGMAPS, kube.get(CONFIGMAPS, "taken-content", namespace), precondition=False)
    eventually(lambda: (condition(kube, namespace, "taken", "Ready") or {}).get("status") == "True", 90,
               "the site to publish after the object in the way is gone (a retry with backoff)")
