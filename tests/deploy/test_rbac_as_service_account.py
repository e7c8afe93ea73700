"""The generated RBAC is what the operator needs, and no more: the Website operator runs with its
ServiceAccount's own token (TokenRequest) instead of the admin identity, publishes and unpublishes a site,
and that token is refused for Secrets and for deleting Namespaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.website import CONFIGMAPS, WEBSITES, operator
from shard_operator.client import Client, find_condition
from shard_operator.errors import ApiError, NotFoundError
from shard_operator.manifests.rbac import rbac_manifests
from shard_operator.source import Resource
from tests.deploy.operator_process import OperatorProcess
from tests.waiting import eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]

KINDS = {"ServiceAccount": Resource("", "v1", "serviceaccounts"),
         "ClusterRole": Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False),
         "ClusterRoleBinding": Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False),
         "Role": Resource("rbac.authorization.k8s.io", "v1", "roles"),
         "RoleBinding": Resource("rbac.authorization.k8s.io", "v1", "rolebindings")}


def service_account_token(admin: Client, namespace: str, name: str) -> str:
    path = KINDS["ServiceAccount"].path(namespace) + f"/{name}/token"
    answer = admin.request("create", KINDS["ServiceAccount"], path, body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    return str(answer["status"]["token"])


def token_kubeconfig(control_plane: Any, token: str, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "test", "cluster": {"server": control_plane.server_url,
                                                  "certificate-authority": str(control_plane.certs.ca_cert)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}]}))
    return path


def test_the_operator_works_with_its_service_accounts_token_and_that_token_can_do_nothing_else(
        control_plane: Any, namespace: str, redis_url: str, tmp_path: Path) -> None:
    with control_plane.api_client() as api:
        WEBSITES.install(api)
        admin = Client(api, field_manager="rbac-tests")
        name = f"so-{namespace}"
        objects = rbac_manifests(operator, name=name, namespace=namespace, lease_name=f"{operator.name}-leader")
        for obj in objects:
            admin.create(KINDS[obj["kind"]], obj)
        token = service_account_token(admin, namespace, name)
        kubeconfig = token_kubeconfig(control_plane, token, tmp_path / "sa.kubeconfig")
        running = OperatorProcess(kubeconfig, redis_url, namespace, tmp_path / "operator.log")
        try:
            kube = Client(api, field_manager="rbac-tests")
            kube.create(WEBSITES.resource, WEBSITES.object("site", namespace, pages=[
                {"path": "/", "title": "Home", "body": "hi"}]))
            eventually(lambda: (find_condition(kube.get(WEBSITES.resource, "site", namespace), "Ready") or {})
                       .get("status") == "True", 60, "the site to be published by the ServiceAccount")
            kube.get(CONFIGMAPS, "site-content", namespace)
            kube.delete(WEBSITES.resource, kube.get(WEBSITES.resource, "site", namespace), precondition=False)

            def deleted() -> bool:
                try:
                    kube.get(WEBSITES.resource, "site", namespace)
                except NotFoundError:
                    return True
                return False

            eventually(deleted, 30, "the finalizer to be removed by the ServiceAccount")
            log = running.log.read_text(errors="replace")
            assert "Forbidden" not in log and " 403" not in log, log[-3000:]

            # While the operator's RBAC is in place, its token can read no Secret and delete no Namespace.
            with control_plane.token_client(token) as as_operator:
                limited = Client(as_operator)
                secrets = Resource("", "v1", "secrets")
                with pytest.raises(ApiError) as reading:
                    limited.request("list", secrets, secrets.path(namespace))
                assert reading.value.status == 403
                namespaces = Resource("", "v1", "namespaces", namespaced=False)
                with pytest.raises(ApiError) as deleting:
                    limited.request("delete", namespaces, namespaces.path() + "/" + namespace)
                assert deleting.value.status == 403
        finally:
            running.close()
            for obj in objects:
                resource = KINDS[obj["kind"]]
                if not resource.namespaced:  # namespaced ones go with the test's namespace
                    admin.request("delete", resource, f"{resource.path()}/{obj['metadata']['name']}")

