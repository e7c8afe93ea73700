"""The manager's configuration: flags, SHARD_OPERATOR_* variables, defaults, and one-line errors."""

from __future__ import annotations

import pytest

from shard_operator.cli import build_parser, config_from_args, load_operator
from shard_operator.config import Config
from shard_operator.errors import ConfigError
from shard_operator.operator import Operator


def parse(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_flags_win_over_environment_variables_which_win_over_defaults(monkeypatch) -> None:
    monkeypatch.setenv("SHARD_OPERATOR_WORKERS", "3")
    monkeypatch.setenv("SHARD_OPERATOR_THREADS", "4")
    monkeypatch.setenv("SHARD_OPERATOR_NAMESPACE", "a, b")
    monkeypatch.setenv("SHARD_OPERATOR_POD_NAME", "op-1")
    config = parse("--threads", "2", "--qps", "50")
    assert (config.workers, config.threads, config.qps, config.burst) == (3, 2, 50.0, 100)
    assert config.namespaces == ["a", "b"]
    assert config.shard_ids == ["op-1-w0", "op-1-w1", "op-1-w2"]
    assert parse("--namespace", "x", "--namespace", "y").namespaces == ["x", "y"]


def test_the_lease_defaults_to_the_controller_name_in_the_pods_namespace() -> None:
    assert Config(pod_name="p").lease("widgets") == ("default", "widgets-leader")
    assert Config(pod_name="p", lease_namespace="ops", lease_name="l").lease("widgets") == ("ops", "l")


@pytest.mark.parametrize(("changes", "message"), [
    ({"workers": 0}, "--workers must be >= 1"),
    ({"threads": 0}, "--threads must be >= 1"),
    ({"heartbeat_interval": 5.0, "member_ttl": 2.0}, "--heartbeat-interval"),
    ({"pod_name": "bad pod"}, "--pod-name"),
    ({"metrics_address": "localhost:http"}, "--metrics-address"),
    ({"kubeconfig": "/does/not/exist"}, "kubeconfig /does/not/exist does not exist"),
])
def test_invalid_values_are_named_in_a_config_error(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(**{"pod_name": "p", **changes}).validate()


def test_metrics_address_zero_turns_the_http_server_off() -> None:
    assert Config(pod_name="p", metrics_address="0").metrics_host_port() is None
    assert Config(pod_name="p", metrics_address=":9090").metrics_host_port() == ("0.0.0.0", 9090)


def test_app_loads_an_operator_and_explains_every_way_it_cannot() -> None:
    assert isinstance(load_operator("examples.widgets:operator"), Operator)
    for spec, message in [(None, "--app is required"), ("examples.widgets", "module:attribute"),
                          ("no_such_module:op", "cannot import no_such_module"),
                          ("examples.widgets:nothing", "has no attribute 'nothing'"),
                          ("examples.widgets:WIDGETS", "not a shard_operator.Operator")]:
        with pytest.raises(ConfigError, match=message):
            load_operator(spec)
