"""The reconcile recorder writes start and end records that the checker pairs into spans."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest

from loadtest import recorder as recording
from loadtest import workload
from loadtest.recorder import Recorder, read_records, spans
from shard_operator import Request
from shard_operator.errors import ClaimLostError


def test_a_recorded_reconcile_reads_back_as_one_span_with_its_outcome(tmp_path: Path) -> None:
    sink = f"file://{tmp_path / 'records.jsonl'}"
    rec = Recorder(sink)
    rid = rec.start("ns/a", shard="pod-0-0", claim="token-1")
    rec.end(rid, "ns/a", outcome="ok", generation=3)
    rec.close()
    [found] = spans(read_records(sink))
    assert (found.key, found.pid, found.shard, found.claim) == ("ns/a", os.getpid(), "pod-0-0", "token-1")
    assert found.generation == 3 and found.outcome == "ok"
    assert found.end is not None and found.end >= found.start


def test_a_reconcile_that_never_ended_is_a_span_without_an_end(tmp_path: Path) -> None:
    sink = str(tmp_path / "records.jsonl")
    rec = Recorder(sink)
    rec.start("ns/a")
    rec.close()
    [found] = spans(read_records(sink))
    assert found.end is None and found.outcome is None


def test_a_half_written_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    rec = Recorder(str(path))
    rec.end(rec.start("ns/a"), "ns/a", outcome="noop")
    rec.close()
    with path.open("a") as file:
        file.write('{"ev": "start", "id": "9-1", "ke')
    assert len(list(read_records(str(path)))) == 2


def test_an_unknown_outcome_is_refused(tmp_path: Path) -> None:
    rec = Recorder(str(tmp_path / "records.jsonl"))
    with pytest.raises(ValueError, match="outcome"):
        rec.end("1-1", "ns/a", outcome="fine")


def test_records_go_to_a_redis_list_named_after_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    server = fakeredis.FakeServer()
    monkeypatch.setattr("redis.Redis.from_url", lambda url, **kw: fakeredis.FakeRedis(server=server))
    rec = Recorder("redis://127.0.0.1:6379/0#run7")
    rec.end(rec.start("ns/a"), "ns/a", outcome="error")
    rec.close()
    assert fakeredis.FakeRedis(server=server).llen(recording.redis_list_key("run7")) == 2
    [found] = spans(read_records("redis://127.0.0.1:6379/0#run7"))
    assert found.outcome == "error"


def test_a_claim_object_is_recorded_by_a_printable_identity(tmp_path: Path) -> None:
    from loadtest.workload import claim_id

    class Claim:
        def __init__(self) -> None:
            self.key, self.confirmed_at = "ns/a", 12.5

    assert claim_id(None) is None and claim_id("token-1") == "token-1"
    assert claim_id(Claim()) == "confirmed@12.500"
    sink = str(tmp_path / "records.jsonl")
    rec = Recorder(sink)
    rec.end(rec.start("ns/a", claim=claim_id(Claim())), "ns/a", outcome="fenced")
    rec.close()
    [found] = spans(read_records(sink))
    assert found.claim == "confirmed@12.500" and found.outcome == "fenced"


class _Ctx:
    """A reconcile context for the sample workload: one object in the cache, a status write that fails."""

    def __init__(self, obj: dict[str, Any], write_error: Exception) -> None:
        self.obj, self.shard, self.claim = obj, "pod-0-0", None

        def patch_status(resource: object, obj: object, status: object) -> None:
            raise write_error

        self.client = SimpleNamespace(patch_status=patch_status)

    def get(self, request: object) -> dict[str, Any]:
        return self.obj


@pytest.mark.parametrize(("spec", "write_error", "outcome", "wrote"), [
    ({"invalid": True}, ConnectionResetError(), "error", False),       # failed before any write
    ({}, ConnectionResetError("reset after sending"), "error", True),  # failed with its write sent
    ({}, ClaimLostError("claim lost"), "fenced", False),               # the fenced client never sent it
], ids=["invalid", "reset", "fenced"])
def test_the_sample_workload_records_whether_a_failed_reconcile_sent_its_write(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spec: dict[str, Any], write_error: Exception,
        outcome: str, wrote: bool) -> None:
    sink = str(tmp_path / "records.jsonl")
    monkeypatch.setenv(recording.ENV, sink)
    monkeypatch.setenv("LOADTEST_WORK_S", "0")
    monkeypatch.setattr(workload, "_recorder", None)
    obj = {"metadata": {"name": "a", "namespace": "ns", "generation": 2}, "spec": spec, "status": {}}
    with pytest.raises(Exception):  # noqa: B017 - whatever it raised, the record must say what it sent
        workload.reconcile(Request(namespace="ns", name="a"), _Ctx(obj, write_error))
    [found] = spans(read_records(sink))
    assert (found.outcome, found.wrote) == (outcome, wrote)
