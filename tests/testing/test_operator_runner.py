"""OperatorRunner runs ``shard-operator run`` as a subprocess: its output and exit code are kept, waiting
on a manager that exited fails at once with its output, a Redis is started when none is given, and the
metrics port is picked free. (Running an operator to completion: tests/testing/test_readme.py, tests/e2e.)"""

from __future__ import annotations

import pytest
import redis

from shard_operator.testing import OperatorRunner

NO_REDIS = "redis://127.0.0.1:1/0"


def test_a_runner_whose_app_cannot_be_imported_keeps_the_exit_code_and_the_error(tmp_path):
    with OperatorRunner("nosuch_module:operator", redis_url=NO_REDIS, cwd=tmp_path) as runner:
        assert runner.wait(30) != 0
    assert runner.exit_code == 2
    assert "cannot import nosuch_module" in runner.stderr
    assert "cannot import nosuch_module" in runner.output


def test_waiting_on_a_runner_that_exited_fails_at_once_with_its_output(tmp_path):
    with (OperatorRunner("nosuch_module:operator", redis_url=NO_REDIS, cwd=tmp_path) as runner,
          pytest.raises(AssertionError, match="exited with 2") as failure):
        runner.wait_for(lambda: False, timeout=60, what="something that never happens")
    assert "cannot import nosuch_module" in str(failure.value)


def test_each_runner_picks_its_own_free_metrics_port(tmp_path):
    ports = {OperatorRunner("m:op", redis_url=NO_REDIS, cwd=tmp_path).port for _ in range(3)}
    assert len(ports) == 3


@pytest.mark.redis
def test_a_runner_without_a_redis_url_starts_a_redis_server_and_stops_it_on_exit(tmp_path):
    with OperatorRunner("nosuch_module:operator", cwd=tmp_path) as runner:
        client = redis.Redis.from_url(runner.redis_url, socket_connect_timeout=1)
        assert client.ping()
        runner.wait(30)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()
