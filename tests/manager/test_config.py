"""The manager's configuration: flags, SHARD_OPERATOR_* variables, defaults, and one-line errors."""

from __future__ import annotations

import os

import pytest
import redis

from shard_operator.cache.scope import Selectors
from shard_operator.cli import build_parser, config_from_args, load_operator
from shard_operator.config import Config, redact_url
from shard_operator.errors import ConfigError
from shard_operator.manager import Manager, connect_redis
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
    ({"workers": 0}, "--workers must be a whole number from 1 to 64, got 0"),
    ({"threads": 0}, "--threads must be a whole number from 1 to 128, got 0"),
    ({"heartbeat_interval": 5.0, "member_ttl": 2.0}, "--heartbeat-interval"),
    ({"heartbeat_interval": 1.5, "member_ttl": 2.0}, "must survive one missed heartbeat"),
    ({"heartbeat_interval": float("nan")}, "--heartbeat-interval must be a number of seconds from .*got nan"),
    ({"claim_ttl": float("inf")}, "--claim-ttl must be a number of seconds from 1.5 to 86400, got inf"),
    ({"claim_ttl": 1.0}, "--claim-ttl"),
    ({"threads": 100000}, "--threads must be a whole number from 1 to 128"),
    ({"claim_batch": 0}, "--claim-batch must be a whole number from 1 to 1024, got 0"),
    ({"workers": 1000}, "--workers must be a whole number from 1 to 64"),
    ({"qps": -1.0}, "--qps must be a number from 0"),
    ({"burst": 2.5}, "--burst must be a whole number"),
    ({"job_workers": -1}, "--job-workers"),
    ({"job_timeout": float("nan")}, "--job-timeout"),
    ({"drain_timeout": 0.0}, "--drain-timeout"),
    ({"lease_duration": 5.0}, r"--lease-duration \(5s\) must be longer than --renew-deadline \(10s\)"),
    ({"lease_duration": 15.5}, "--lease-duration must be a whole number of seconds"),
    ({"renew_deadline": 2.0, "retry_period": 2.0}, r"--renew-deadline \(2s\) must be longer than 1.2 x --retry-period"),
    ({"retry_period": float("-inf")}, "--retry-period"),
    ({"redis_url": "http://u:secret@host:6379/0"}, r"--redis-url 'http://u:\*\*\*@host:6379/0' must start with"),
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


def test_the_timings_the_e2e_harness_and_the_defaults_use_are_valid() -> None:
    Config(pod_name="p").validate()
    Config(pod_name="p", lease_duration=3, renew_deadline=2, retry_period=0.5, claim_ttl=3, member_ttl=2,
           heartbeat_interval=0.5, qps=0, threads=128, workers=64).validate()


def test_each_worker_process_gets_a_redis_pool_sized_from_its_threads() -> None:
    assert Config(pod_name="p", threads=128).redis_max_connections == 136
    manager = Manager(load_operator("examples.widgets:operator"), Config(pod_name="p", threads=4, workers=2))
    assert [spec.redis_options for spec in manager._specs()] == [{"max_connections": 12}] * 2


def test_the_claim_batch_reaches_every_worker_process_and_defaults_to_one_key_per_call(monkeypatch) -> None:
    widgets = load_operator("examples.widgets:operator")
    assert [spec.batch for spec in Manager(widgets, Config(pod_name="p"))._specs()] == [1]
    monkeypatch.setenv("SHARD_OPERATOR_CLAIM_BATCH", "8")
    assert parse("--pod-name", "p").claim_batch == 8
    batched = Manager(widgets, parse("--pod-name", "p", "--workers", "2", "--claim-batch", "16"))
    assert [spec.batch for spec in batched._specs()] == [16, 16]


def test_each_worker_process_knows_the_namespaces_its_manager_watches() -> None:
    widgets = load_operator("examples.widgets:operator")
    narrowed = Manager(widgets, Config(pod_name="p", workers=2, namespaces=["a", "b"]))
    assert [spec.namespaces for spec in narrowed._specs()] == [("a", "b")] * 2
    assert [spec.namespaces for spec in Manager(widgets, Config(pod_name="p"))._specs()] == [None]


def test_each_worker_process_knows_the_selectors_its_manager_lists_the_primary_resource_with() -> None:
    widgets = load_operator("examples.widgets:operator")
    narrowed = Manager(widgets, parse("--pod-name", "p", "--workers", "2", "--label-selector", "app=new",
                                      "--field-selector", "metadata.name!=x"))
    assert [spec.selectors for spec in narrowed._specs()] == [Selectors("app=new", "metadata.name!=x")] * 2
    plain = Manager(widgets, Config(pod_name="p"))._specs()
    assert [spec.selectors for spec in plain] == [Selectors.of(widgets.label_selector, widgets.field_selector)]


@pytest.mark.parametrize(("text", "redacted"), [
    ("redis://user:hunter2@db:6379/0", "redis://user:***@db:6379/0"),
    ("rediss://:hunter2@db:6380", "rediss://:***@db:6380"),
    ("redis://hunter2@db", "redis://***@db"),
    ("unix:///run/redis.sock?db=1&password=hunter2", "unix:///run/redis.sock?db=1&password=***"),
    ("redis://db/0?Password=hunter2&db=2", "redis://db/0?Password=***&db=2"),
    ("cannot reach redis://u:hunter2@db:1/0: Error 111", "cannot reach redis://u:***@db:1/0: Error 111"),
    ("redis://db:6379/0", "redis://db:6379/0"),
])
def test_redact_url_hides_passwords_in_urls_anywhere_in_a_message(text, redacted) -> None:
    assert redact_url(text) == redacted


def test_neither_a_config_nor_an_unreachable_redis_message_shows_the_password() -> None:
    assert "hunter2" not in repr(Config(pod_name="p", redis_url="redis://u:hunter2@127.0.0.1:9/0"))
    for url in ("redis://u:hunter2@127.0.0.1:9/0", "redis://127.0.0.1:9/0?password=hunter2"):
        with pytest.raises(ConfigError, match="cannot reach Redis at redis://") as raised:
            connect_redis(url)
        assert "hunter2" not in str(raised.value) and "***" in str(raised.value)


def test_the_redis_password_file_goes_into_the_url_and_into_no_environment_variable(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret/with:odd@chars\n")  # a mounted Secret's file; one trailing newline is dropped
    monkeypatch.setenv("SHARD_OPERATOR_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("SHARD_OPERATOR_REDIS_PASSWORD_FILE", str(secret))
    config = parse()
    assert config.redis_url == "redis://:s3cret%2Fwith%3Aodd%40chars@redis:6379/0"
    assert redis.Redis.from_url(config.redis_url).connection_pool.connection_kwargs["password"] == \
        "s3cret/with:odd@chars"
    assert "s3cret" not in repr(config)
    assert config.validate().redis_url == config.redis_url  # read once: validating again changes nothing
    assert "s3cret" not in "".join(os.environ.values())
    assert parse("--redis-url", "redis://user@redis:6379/1").redis_url == \
        "redis://user:s3cret%2Fwith%3Aodd%40chars@redis:6379/1"
    assert parse("--redis-url", "unix:///run/redis.sock?db=2").redis_url == \
        "unix:///run/redis.sock?db=2&password=s3cret%2Fwith%3Aodd%40chars"


@pytest.mark.parametrize(("url", "content", "message"), [
    ("redis://redis:6379/0", None, "--redis-password-file .*: cannot read it: No such file or directory"),
    ("redis://redis:6379/0", "\n", "--redis-password-file .* is empty"),
    ("redis://:other@redis:6379/0", "s3cret", "already has a password: give it there or in --redis-password-file"),
])
def test_a_redis_password_file_that_cannot_be_used_is_a_config_error(tmp_path, url, content, message) -> None:
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        Config(pod_name="p", redis_url=url, redis_password_file=str(secret)).validate()
    assert "other" not in str(raised.value)
