"""``process_*`` metrics in multiprocess mode: one series per supervised process, read from /proc."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from shard_operator import metrics
from shard_operator.supervision import Child, ProcessPool
from tests.waiting import eventually


def _spin_then_wait(stop: threading.Event) -> None:
    until = time.process_time() + 0.3
    while time.process_time() < until:  # CPU time the parent must see in process_cpu_seconds_total
        pass
    stop.wait()


def samples(name: str) -> dict[str, float]:
    families = text_string_to_metric_families(metrics.render().decode())
    return {sample.labels["process"]: sample.value for family in families for sample in family.samples
            if sample.name == name}


@pytest.fixture
def multiprocess_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.enable_multiprocess(tmp_path / "metrics")
    yield tmp_path / "metrics"
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    values.ValueClass = values.get_value_class()  # later tests' metrics live in this process again


def test_the_manager_and_each_supervised_child_have_their_own_cpu_and_memory_series(multiprocess_dir) -> None:
    pool = ProcessPool(2, lambda index: Child(f"worker-w{index}", _spin_then_wait))
    pool.start()
    try:
        eventually(lambda: all(samples("process_cpu_seconds_total").get(f"worker-w{i}", 0) >= 0.25
                               for i in range(2)), timeout=20, what="each child's CPU time")
        memory = samples("process_resident_memory_bytes")
        assert set(memory) == {"manager", "worker-w0", "worker-w1"}
        assert all(value > 1_000_000 for value in memory.values()), memory
        assert set(samples("process_open_fds")) == set(memory)
        started = samples("process_start_time_seconds")
        assert all(abs(value - time.time()) < 3600 for value in started.values()), started
    finally:
        pool.stop(10)
    assert set(samples("process_cpu_seconds_total")) == {"manager"}, "a stopped child's series must go"


def test_a_process_that_vanished_before_the_scrape_is_skipped(multiprocess_dir) -> None:
    metrics.track_process(2**22 + 12345, "worker-gone")  # beyond pid_max's default: never a live pid
    try:
        assert "worker-gone" not in samples("process_resident_memory_bytes")
        assert "manager" in samples("process_resident_memory_bytes")
    finally:
        metrics.mark_process_dead(2**22 + 12345)
