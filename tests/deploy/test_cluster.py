"""The manifests against a real API server: every overlay passes a server-side dry run, the operator's pod
is admitted at the Pod Security "restricted" level, and the Website CRD's schema rejects invalid specs."""

from __future__ import annotations

import copy
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.website import WEBSITES
from shard_operator.client import Client
from shard_operator.errors import ApiError
from shard_operator.kube import request_json
from shard_operator.source import Resource
from tests.tools import tool_missing

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["dev", "production"]
# The Prometheus Operator's CRDs, open-schema stand-ins, so the monitoring objects can be dry-run.
MONITORING_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The overlay rendered by kustomize, built from its Go module by tools/kustomize/build.sh (`make setup`)."""
    built = ROOT / "tools" / "kustomize" / "bin" / "kustomize"
    if built.exists():
        command = [str(built), "build", str(folder)]
    elif (kubectl := shutil.which("kubectl")) is not None:
        command = [kubectl, "kustomize", str(folder)]
    else:
        tool_missing("kustomize is not built: run tools/kustomize/build.sh (Go >= 1.24), or install kubectl")
    rendered = subprocess.run(command, capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def resource_of(doc: dict[str, Any]) -> Resource:
    group, _, version = doc["apiVersion"].rpartition("/")
    plural = {"NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets"}.get(
        doc["kind"], MONITORING_KINDS.get(doc["kind"], doc["kind"].lower() + "s"))
    cluster_kinds = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    return Resource(group, version, plural, namespaced=doc["kind"] not in cluster_kinds)


@pytest.fixture(scope="module")
def admin(control_plane: Any) -> Iterator[Client]:
    from shard_operator.client import install_crd, open_crd

    with control_plane.api_client() as api:
        WEBSITES.install(api)
        for kind, plural in MONITORING_KINDS.items():
            install_crd(api, open_crd(Resource("monitoring.coreos.com", "v1", plural), kind))
        yield Client(api, field_manager="deploy-tests")


def dry_run(admin: Client, doc: dict[str, Any]) -> dict[str, Any]:
    resource = resource_of(doc)
    namespace = doc["metadata"].get("namespace") if resource.namespaced else None
    answer = request_json(admin.api_client, "POST", resource.path(namespace), query=[("dryRun", "All")],
                          headers={"Content-Type": "application/json", "Accept": "application/json"}, body=doc,
                          timeout=30)
    assert isinstance(answer, dict)
    return answer


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_passes_a_server_side_dry_run(admin: Client, overlay: str) -> None:
    docs = kustomize(ROOT / "deploy" / "overlays" / overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {"StatefulSet", "ClusterRole", "Role", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    namespace = next(doc for doc in docs if doc["kind"] == "Namespace")
    try:
        admin.create(resource_of(namespace), namespace)  # namespaced objects are dry-run into it
    except ApiError as exc:
        assert exc.status == 409
    for doc in docs:
        if doc["kind"] in ("Namespace", "CustomResourceDefinition"):
            # the CRD exists already (a dry-run create would be refused as a duplicate): compare instead
            continue
        dry_run(admin, doc)
    crd = next(doc for doc in docs if doc["kind"] == "CustomResourceDefinition")
    assert crd == WEBSITES.manifest()


def test_the_operator_pod_is_admitted_at_the_restricted_pod_security_level(admin: Client) -> None:
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    namespaces = Resource("", "v1", "namespaces", namespaced=False)
    admin.create(namespaces, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    try:
        for overlay in OVERLAYS:
            docs = kustomize(ROOT / "deploy" / "overlays" / overlay)
            for workload in (d for d in docs if d["kind"] == "StatefulSet"):
                template = workload["spec"]["template"]
                if template["spec"].get("serviceAccountName"):
                    account = {"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": template["spec"]["serviceAccountName"], "namespace": name}}
                    try:
                        admin.create(Resource("", "v1", "serviceaccounts"), account)
                    except ApiError as exc:
                        assert exc.status == 409
                spec = copy.deepcopy(template["spec"])
                for claim in workload["spec"].get("volumeClaimTemplates", []):  # as the StatefulSet controller does
                    claim_name = f"{claim['metadata']['name']}-{workload['metadata']['name']}-0"
                    spec.setdefault("volumes", []).append({"name": claim["metadata"]["name"],
                                                           "persistentVolumeClaim": {"claimName": claim_name}})
                pod = {"apiVersion": "v1", "kind": "Pod", "spec": spec,
                       "metadata": {"name": f"{workload['metadata']['name']}-0", "namespace": name,
                                    "labels": template["metadata"]["labels"]}}
                dry_run(admin, pod)
                # The namespace really enforces the level: the same pod running as root is refused.
                root = copy.deepcopy(pod)
                root["spec"]["securityContext"] = {"runAsUser": 0}
                with pytest.raises(ApiError, match="restricted"):
                    dry_run(admin, root)
    finally:
        admin.request("delete", namespaces, namespaces.path() + "/" + name)


@pytest.mark.parametrize("spec, message", [
    ({"pages": []}, "should have at least 1 items"),
    ({"pages": [{"path": "no-slash", "title": "t"}]}, "spec.pages[0].path"),
    ({"pages": [{"path": "/", "title": ""}]}, "spec.pages[0].title"),
    ({"pages": [{"path": "/", "title": "t"}], "replicas": 99}, "spec.replicas"),
    ({"replicas": 1}, "spec.pages: Required value"),
])
def test_the_crd_schema_rejects_an_invalid_website(admin: Client, namespace: str, spec: dict[str, Any],
                                                   message: str) -> None:
    with pytest.raises(ApiError, match=message.replace("[", r"\[").replace("]", r"\]")) as raised:
        admin.create(WEBSITES.resource, WEBSITES.object("bad", namespace, **spec))
    assert raised.value.status == 422
