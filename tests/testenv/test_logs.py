"""Log lines name their process role, shard, controller and key, as text or JSON, and an unreachable
API server costs one line per failed attempt rather than urllib3's three retry warnings."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from shard_operator import logs
from shard_operator.errors import ConfigError
from shard_operator.testing.process import free_port


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where the configured handler writes; the root logger and process fields are restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    process = dict(logs._process)
    out = io.StringIO()
    yield out
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logs._process.update(process)


def test_a_text_line_names_role_shard_controller_and_key(stream: io.StringIO) -> None:
    logs.configure("INFO", "text", stream=stream)
    logs.set_process("worker", "pod-a-1")
    with logs.log_context(controller="widgets"), logs.log_context(key="default/w1"):
        logging.getLogger("shard_operator.worker").info("reconciled in %d ms", 12)
    [line] = stream.getvalue().splitlines()
    assert " INFO worker[pod-a-1] shard_operator.worker: reconciled in 12 ms controller=widgets key=default/w1" in line
    assert "MainProcess" not in line


def test_a_text_line_leaves_out_what_is_not_known(stream: io.StringIO) -> None:
    logs.configure("INFO", "text", stream=stream)
    logs.set_process("manager")
    logging.getLogger("shard_operator.manager").warning("lost the lease")
    [line] = stream.getvalue().splitlines()
    assert line.endswith(" WARNING manager shard_operator.manager: lost the lease")


def test_a_json_line_carries_every_field(stream: io.StringIO) -> None:
    logs.configure("DEBUG", "json", stream=stream)
    logs.set_process("job-worker", "pod-b-0")
    with logs.log_context(controller="widgets", key="ns/w2", attempt=3):
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("shard_operator.jobs").exception("job failed")
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "shard_operator.jobs"
    assert entry["message"] == "job failed"
    assert (entry["role"], entry["shard"], entry["controller"], entry["key"], entry["attempt"]) == \
        ("job-worker", "pod-b-0", "widgets", "ns/w2", 3)
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("Z") and isinstance(entry["pid"], int)


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_no_record_shows_a_password_in_its_message_arguments_or_traceback(stream: io.StringIO, fmt: str) -> None:
    logs.configure("INFO", fmt, stream=stream)
    logger = logging.getLogger("shard_operator.anywhere")
    logger.warning("cannot reach redis://operator:hunter2@redis:6379/0")
    logger.warning("retrying %s in %d s", "rediss://redis:6380/0?password=hunter2", 3)
    try:
        raise ConnectionError("Error connecting to redis://:hunter2@redis:6379")
    except ConnectionError:
        logger.exception("lost Redis")
    written = stream.getvalue()
    assert "hunter2" not in written, written
    assert "redis://operator:***@redis:6379/0" in written and "?password=***" in written, written
    assert "retrying rediss://" in written and " in 3 s" in written, written
    assert "ConnectionError: Error connecting to redis://:***@redis:6379" in written, written


def test_the_context_belongs_to_the_thread_that_bound_it(stream: io.StringIO) -> None:
    logs.configure("INFO", "json", stream=stream)
    logs.set_process("worker", "s0")
    inside, outside = threading.Event(), threading.Event()

    def reconcile() -> None:
        with logs.log_context(key="default/a"):
            inside.set()
            outside.wait(5)
            logging.getLogger("t").info("in the reconcile")

    thread = threading.Thread(target=reconcile)
    thread.start()
    inside.wait(5)
    logging.getLogger("t").info("elsewhere")
    outside.set()
    thread.join(5)
    entries = {e["message"]: e for e in map(json.loads, stream.getvalue().splitlines())}
    assert entries["in the reconcile"]["key"] == "default/a"
    assert entries["elsewhere"]["key"] is None


def test_the_process_fields_reach_a_thread_started_later_and_a_bound_controller_wins(stream: io.StringIO) -> None:
    logs.configure("INFO", "json", stream=stream)
    logs.set_process("worker", "s0", controller="widgets")
    renewer = threading.Thread(target=lambda: logging.getLogger("renewer").info("claim renewed"))
    renewer.start()
    renewer.join(5)
    with logs.log_context(controller="gadgets"):
        logging.getLogger("t").info("bound")
    entries = {e["message"]: e for e in map(json.loads, stream.getvalue().splitlines())}
    assert (entries["claim renewed"]["role"], entries["claim renewed"]["shard"],
            entries["claim renewed"]["controller"]) == ("worker", "s0", "widgets")
    assert entries["bound"]["controller"] == "gadgets"


def test_an_unknown_level_or_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--log-level"):
        logs.configure("LOUD", "text")
    with pytest.raises(ConfigError, match="--log-format"):
        logs.configure("INFO", "xml")


def test_a_request_to_an_unreachable_api_server_logs_no_urllib3_retry_warnings(stream: io.StringIO) -> None:
    from kubernetes import client

    logs.configure("INFO", "text", stream=stream)
    conf = client.Configuration()
    conf.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with client.ApiClient(conf) as api, pytest.raises(Exception, match=r"Connection refused|Max retries"):
        client.CoreV1Api(api).list_namespace(_request_timeout=2)
    assert "Retrying" not in stream.getvalue()
    assert stream.getvalue() == ""


def test_urllib3_would_log_three_retry_warnings_without_the_filter() -> None:
    """The noise the filter removes is real: the same request logs urllib3's retries when unfiltered."""
    from kubernetes import client

    pool_logger = logging.getLogger("urllib3.connectionpool")
    pool_logger.removeFilter(logs._RETRY_FILTER)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    pool_logger.addHandler(handler)
    try:
        conf = client.Configuration()
        conf.host = f"http://127.0.0.1:{free_port()}"
        with client.ApiClient(conf) as api, pytest.raises(Exception):  # noqa: B017 - any transport error
            client.CoreV1Api(api).list_namespace(_request_timeout=2)
    finally:
        pool_logger.removeHandler(handler)
        logs.quiet_urllib3_retries()
    assert out.getvalue().count("Retrying (") == 3
