"""The deployment files are consistent with the code: every option they set is one the command
accepts, the example CRD matches the example operator, and the API server accepts every manifest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.widgets import CRD
from shard_operator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_OPTION = re.compile(r"^SHARD_OPERATOR_([A-Z_]+)$")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in documents(DEPLOY / name)]


def find(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def assert_run_accepts(args: list[str], env: dict[str, str]) -> None:
    """The `run` command parses ``args`` and each SHARD_OPERATOR_* variable as its --option."""
    argv = list(args)
    for name, value in env.items():
        match = ENV_OPTION.match(name)
        if match:
            argv += [f"--{match.group(1).lower().replace('_', '-')}", value]
    build_parser().parse_args(argv)  # exits (fails the test) on an unknown option or a bad value


def test_the_kustomization_lists_every_manifest_in_the_folder():
    listed = set(yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_statefulset_passes_only_options_the_run_command_accepts():
    container = find("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    assert "valueFrom" in next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert_run_accepts(container["args"], env)


def test_the_grace_period_outlasts_the_drain_timeout():
    spec = find("StatefulSet")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert spec["terminationGracePeriodSeconds"] > float(env["SHARD_OPERATOR_DRAIN_TIMEOUT"])


def test_the_probes_use_the_health_endpoints_on_the_metrics_port():
    container = find("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env["SHARD_OPERATOR_METRICS_ADDRESS"].rsplit(":", 1)[1])
    assert {"name": "metrics", "containerPort": port} in container["ports"]


def test_the_crd_manifest_is_the_one_the_example_operator_installs():
    assert find("CustomResourceDefinition")["spec"] == CRD["spec"]


def test_the_rbac_grants_what_the_example_operator_uses():
    role = find("ClusterRole")
    verbs = {(rule["apiGroups"][0], resource): set(rule["verbs"]) for rule in role["rules"]
             for resource in rule["resources"]}
    assert {"list", "watch", "patch"} <= verbs[("example.shard-operator.dev", "widgets")]
    assert "patch" in verbs[("example.shard-operator.dev", "widgets/status")]
    assert "create" in verbs[("", "events")]
    lease_rules = find("Role")["rules"]
    assert {"get", "create", "update"} <= set(lease_rules[0]["verbs"])


def test_docker_compose_runs_the_image_with_options_the_command_accepts():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    operators = {name: svc for name, svc in compose["services"].items() if name.startswith("operator")}
    assert len(operators) >= 2
    pod_names = {svc["environment"]["POD_NAME"] for svc in operators.values()}
    assert len(pod_names) == len(operators)  # each container names its own shards
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))
    for svc in operators.values():
        assert_run_accepts(cmd, {k: str(v) for k, v in svc["environment"].items()})


def test_every_path_the_dockerfile_copies_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


@pytest.mark.controlplane
def test_the_api_server_accepts_every_manifest(control_plane):
    from kubernetes import client, utils

    docs = manifests()
    with control_plane.api_client() as api:
        namespace = next(doc for doc in docs if doc["kind"] == "Namespace")
        try:
            client.CoreV1Api(api).create_namespace(namespace)
        except client.ApiException as exc:
            assert exc.status == 409
        for doc in docs:
            if doc["kind"] != "Namespace":
                # Server-side dry run: full validation and admission, nothing stored.
                utils.create_from_dict(api, doc, dry_run="All")
