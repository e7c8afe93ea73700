"""The generated deployment: deploy/ is exactly what the code generates, the StatefulSet is what a
platform team accepts, and the RBAC is derived from what the operator watches and writes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.website import operator
from shard_operator.cli import build_parser
from shard_operator.errors import ConfigError
from shard_operator.handler import For, Watches
from shard_operator.manifests.monitoring import render_monitoring
from shard_operator.manifests.rbac import cluster_rules
from shard_operator.manifests.rendering import HEADER, generate, render
from shard_operator.manifests.workload import WorkloadOptions
from shard_operator.operator import Operator
from shard_operator.source import Resource

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
APP = "examples.website:operator"
ENV_OPTION = re.compile(r"^SHARD_OPERATOR_([A-Z_]+)$")
REGENERATE = ("shard-operator manifests --app examples.website:operator --out deploy/base "
              "--monitoring-out deploy/monitoring")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def base() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in documents(BASE / name)]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [doc for doc in base() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    return found


def operator_container() -> dict[str, Any]:
    container: dict[str, Any] = find("StatefulSet", "shard-operator")["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_checked_in_manifests_are_the_ones_the_operator_generates():
    options = WorkloadOptions(app=APP)
    expected = {BASE: render(operator, options),
                ROOT / "deploy" / "monitoring": render_monitoring(options, HEADER.format(app=APP))}
    for folder, files in expected.items():
        for name, text in files.items():
            assert (folder / name).read_text() == text, f"{folder / name} is stale: run `{REGENERATE}`"


def test_the_statefulset_passes_only_options_the_run_command_accepts():
    container = operator_container()
    argv = list(container["args"])
    for env in container["env"]:
        match = ENV_OPTION.match(env["name"])
        if match:
            argv += [f"--{match.group(1).lower().replace('_', '-')}", env.get("value", "x")]
    build_parser().parse_args(argv)  # exits (fails the test) on an unknown option


def test_the_pod_name_from_the_downward_api_is_the_shard_identity():
    env = {e["name"]: e for e in operator_container()["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_grace_period_outlasts_the_drain_timeout():
    spec = find("StatefulSet", "shard-operator")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert spec["terminationGracePeriodSeconds"] > float(env["SHARD_OPERATOR_DRAIN_TIMEOUT"]) + 10


def test_the_probes_use_the_health_endpoints_and_resources_are_bounded():
    container = operator_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"])


def test_every_container_is_restricted_and_every_image_is_pinned_by_version():
    for workload in (find("StatefulSet", "shard-operator"), find("StatefulSet", "redis")):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert re.search(r":\d+\.\d+\.\d+", container["image"]), container["image"]


def test_the_redis_password_comes_from_a_secret_and_never_from_a_plain_value():
    for env in find("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "PASSWORD" in env["name"] or "AUTH" in env["name"]:
            assert env["valueFrom"]["secretKeyRef"]["name"] == "redis-auth"
    # the operator reads it from the Secret mounted as a read-only file: no env variable holds it
    env = {e["name"]: e for e in operator_container()["env"]}
    assert all("valueFrom" not in e or "fieldRef" in e["valueFrom"] for e in env.values())
    assert env["SHARD_OPERATOR_REDIS_URL"]["value"] == "redis://redis:6379/0"
    password_file = Path(env["SHARD_OPERATOR_REDIS_PASSWORD_FILE"]["value"])
    (mount,) = [m for m in operator_container()["volumeMounts"] if Path(m["mountPath"]) == password_file.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in find("StatefulSet", "shard-operator")["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "redis-auth"
    assert {"key": "password", "path": password_file.name} in volume["secret"]["items"]
    assert volume["secret"]["defaultMode"] & 0o007 == 0  # not readable by others
    assert "requirepass" not in str(find("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0].get(
        "args", ""))
    assert find("StatefulSet", "redis")["spec"]["volumeClaimTemplates"]  # persistence


def test_only_the_operator_reaches_redis():
    policy = find("NetworkPolicy", "redis-from-operator")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "redis"
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": find("StatefulSet", "shard-operator")["spec"]["selector"]
                                             ["matchLabels"]}}]


def test_the_service_monitor_selects_exactly_one_service_so_each_pod_is_scraped_once():
    (monitor,) = documents(ROOT / "deploy" / "monitoring" / "service-monitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [doc["metadata"]["name"] for doc in base()
                if doc["kind"] == "Service" and selector.items() <= doc["metadata"].get("labels", {}).items()]
    assert selected == ["shard-operator-metrics"]
    assert monitor["metadata"]["namespace"] == find("Service", "shard-operator-metrics")["metadata"]["namespace"]


def verbs(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for resource in rule["resources"]:
            found.setdefault((rule["apiGroups"][0], resource), set()).update(rule["verbs"])
    return found


def test_rbac_reads_every_watched_resource_and_writes_only_owned_kinds_status_finalizers_and_events():
    granted = verbs(cluster_rules(operator))
    assert granted == {
        ("example.shard-operator.dev", "websites"): {"get", "list", "watch", "patch", "update"},
        ("example.shard-operator.dev", "websites/status"): {"get", "patch", "update"},
        ("example.shard-operator.dev", "websites/finalizers"): {"update"},
        ("", "configmaps"): {"get", "list", "watch", "create", "update", "patch", "delete"},
        ("", "services"): {"get", "list", "watch", "create", "update", "patch", "delete"},
        ("apps", "deployments"): {"get", "list", "watch", "create", "update", "patch", "delete"},
        ("", "events"): {"create", "patch"},
    }
    assert find("ClusterRole")["rules"] == cluster_rules(operator)


GADGETS = Resource("example.dev", "v1", "gadgets")
NODES = Resource("", "v1", "nodes", namespaced=False)


def gadget_operator(**extra: Any) -> Operator:
    return Operator(name="gadgets", reconcile=lambda request, ctx: None, for_=For(GADGETS, kind="Gadget"),
                    watches=[Watches(NODES, lambda node: [])], **extra)


def test_a_watched_resource_is_only_read_and_rules_the_operator_declares_are_added_to_the_cluster_role():
    granted = verbs(cluster_rules(gadget_operator()))
    assert granted[("", "nodes")] == {"get", "list", "watch"}
    assert granted[("example.dev", "gadgets")] == {"get", "list", "watch"}

    patch_nodes = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]}
    operator = gadget_operator(rbac_rules=[patch_nodes])
    (role,) = [doc for doc in generate(operator, WorkloadOptions(app="gadgets:operator"))["rbac.yaml"]
               if doc["kind"] == "ClusterRole"]
    assert verbs(role["rules"])[("", "nodes")] == {"get", "list", "watch", "patch"}


def test_an_rbac_rule_without_api_groups_resources_or_verbs_is_a_config_error():
    with pytest.raises(ConfigError, match="rbac_rules"):
        gadget_operator(rbac_rules=[{"apiGroups": [""], "resources": ["nodes"]}])


def test_the_lease_rules_are_limited_to_the_operators_lease_in_its_namespace():
    role = find("Role", "shard-operator-leader-election")
    assert role["metadata"]["namespace"] == "shard-operator"
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    unnamed = [rule for rule in role["rules"] if not rule.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
                      "resourceNames": ["websites-leader"]}]
    assert [rule["verbs"] for rule in unnamed] == [["create"]]  # create cannot be limited by name


def run_manifests(*argv: str) -> int:
    import argparse

    from shard_operator.manifests.cli import add_manifests_parser, cmd_manifests

    parser = argparse.ArgumentParser()
    add_manifests_parser(parser.add_subparsers(dest="command"))
    return cmd_manifests(parser.parse_args(["manifests", "--app", APP, *argv]))


def test_the_manifests_command_writes_the_base_and_check_fails_on_a_stale_file(tmp_path, capsys):
    assert run_manifests("--out", str(BASE), "--monitoring-out", str(ROOT / "deploy" / "monitoring"), "--check") == 0
    assert run_manifests("--out", str(tmp_path / "base")) == 0
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == sorted(p.name for p in BASE.iterdir())
    (tmp_path / "base" / "rbac.yaml").write_text("# edited by hand\n")
    assert run_manifests("--out", str(tmp_path / "base"), "--check") == 1
    assert "rbac.yaml" in capsys.readouterr().err
