"""The generated StatefulSet runs and scales: one operator process per pod object (tests/deploy/pod_runner.py),
each with exactly the container's args and env and its ServiceAccount's own token, against a Redis that
needs the password from the Secret; the StatefulSet is scaled 2 → 5 → 2 while Websites keep changing, and
every Website converges."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest
import redis

from examples.website import WEBSITES, operator
from shard_operator.client import Client, find_condition
from shard_operator.manifests.rbac import rbac_manifests
from shard_operator.manifests.workload import WorkloadOptions, statefulset
from shard_operator.source import Resource
from shard_operator.testing import RedisServer
from tests.deploy.pod_runner import STATEFULSETS, PodRunner, StatefulSetStandIn
from tests.deploy.test_rbac_as_service_account import KINDS
from tests.waiting import eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]

SECRETS = Resource("", "v1", "secrets")


def converged(kube: Client, namespace: str, names: list[str]) -> bool:
    for name in names:
        site = kube.get(WEBSITES.resource, name, namespace)
        ready = find_condition(site, "Ready") or {}
        if ready.get("status") != "True" or (site.get("status") or {}).get("observedGeneration") != \
                site["metadata"]["generation"]:
            return False
    return True


def test_the_statefulset_runs_as_its_service_account_and_scales_2_to_5_to_2_while_sites_change(
        control_plane: Any, namespace: str, tmp_path: Path) -> None:
    password = secrets.token_hex(16)
    with RedisServer() as server, control_plane.api_client() as api:
        redis.Redis.from_url(server.url).config_set("requirepass", password)
        WEBSITES.install(api)
        admin = Client(api, field_manager="statefulset-tests")
        options = WorkloadOptions(name=f"so-{namespace[-10:]}", namespace=namespace, replicas=2, workers=1,
                                  drain_timeout=5, own_namespace_only=True)
        objects = rbac_manifests(operator, name=options.name, namespace=namespace, lease_name="websites-leader")
        for obj in objects:
            admin.create(KINDS[obj["kind"]], obj)
        admin.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": options.redis_secret,
                                                                                "namespace": namespace},
                               "data": {"password": base64.b64encode(password.encode()).decode()}})
        admin.create(STATEFULSETS, statefulset(options))
        standin = StatefulSetStandIn(admin, namespace, options.name)
        runner = PodRunner(admin, control_plane, namespace, options.name, tmp_path,
                           hosts={f"{options.redis_service}:6379": f"127.0.0.1:{server.port}"})

        def step() -> None:
            standin.sync()
            runner.sync(standin.pods())

        names = [f"site-{i}" for i in range(8)]
        try:
            step()
            assert set(runner.running) == {f"{options.name}-0", f"{options.name}-1"}
            for name in names:
                admin.create(WEBSITES.resource, WEBSITES.object(name, namespace, pages=[{"path": "/", "title": name}]))
            for round_, replicas in enumerate((5, 2)):
                sts = admin.get(STATEFULSETS, options.name, namespace)
                admin.patch(STATEFULSETS, sts, {"spec": {"replicas": replicas}})
                step()
                assert len(runner.running) == replicas
                for name in names[round_::2]:  # a stream of spec changes while the ring changes
                    site = admin.get(WEBSITES.resource, name, namespace)
                    admin.patch(WEBSITES.resource, site, {"spec": {"replicas": round_ + 2}})
            eventually(lambda: converged(admin, namespace, names), 180, "every Website to converge", interval=0.5)
        except BaseException:
            print(runner.logs())
            raise
        finally:
            runner.close()
            for obj in objects:
                resource = KINDS[obj["kind"]]
                if not resource.namespaced:
                    admin.request("delete", resource, f"{resource.path()}/{obj['metadata']['name']}")
        assert "Forbidden" not in runner.logs()
        assert "NOAUTH" not in runner.logs()
