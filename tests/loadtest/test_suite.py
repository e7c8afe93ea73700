"""``make loadtest``'s suite and the lab's command line, without a cluster: every suite entry is a valid
command whose files exist, and the exit status says set-up failed (2) or a gate broke (1)."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from loadtest import cli, suite
from loadtest.faults import parse_fault
from loadtest.slo import load_slo


def test_every_suite_entry_parses_and_every_file_it_names_exists(tmp_path: Path) -> None:
    crd = suite.write_widget_crd(tmp_path)
    load_slo(Path(suite.SMOKE_SLO))
    for entry in suite.entries(crd):
        args = cli.build_parser().parse_args([*entry, "--slo", suite.SMOKE_SLO, "--no-progress"])
        assert args.slo.is_file()
        assert args.crd is None or args.crd.is_file(), entry
        for fault in args.fault:
            parse_fault(fault)
        assert not any("{" in arg and arg != args.operator_cmd for arg in entry), entry


def test_the_black_box_entry_gets_the_example_operators_crd_and_an_app_that_imports(tmp_path: Path) -> None:
    [entry] = [e for e in suite.entries(suite.write_widget_crd(tmp_path)) if "--operator-cmd" in e]
    crd = yaml.safe_load(Path(entry[entry.index("--crd") + 1]).read_text())
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "Widget"
    command = shlex.split(entry[entry.index("--operator-cmd") + 1])
    module, _, attr = command[command.index("--app") + 1].partition(":")
    assert getattr(importlib.import_module(module), attr).name == "widgets"


class _FailingRun:
    def __init__(self, options: Any) -> None:
        self.options = options

    def __enter__(self) -> _FailingRun:
        raise FileNotFoundError(2, "No such file or directory", "kube-apiserver")


def test_a_run_that_cannot_be_set_up_exits_2_with_one_line_and_no_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "Run", _FailingRun)
    assert cli.main(["burst", "--objects", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be set up" in err and "kube-apiserver" in err
    assert "Traceback" not in err


def test_a_missing_crd_file_exits_2_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "Run", _FailingRun)  # never reached
    code = cli.main(["burst", "--operator-cmd", "true", "--crd", str(tmp_path / "gone.yaml"), "--no-progress"])
    assert code == 2 and "gone.yaml: no such file" in capsys.readouterr().err


def _stub_run(results: dict[str, Any], tmp_path: Path) -> type:
    class StubRun:
        def __init__(self, options: Any) -> None:
            self.dir = tmp_path
            self.phase, self.started, self.events = "done", 0.0, []
            self.convergence = SimpleNamespace(converged_count=lambda: 0, changes=[])
            self.sampler = SimpleNamespace(series=[])

        def __enter__(self) -> StubRun:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def results(self, finals: Any, extra: dict[str, Any]) -> dict[str, Any]:
            return {**results, **extra}

    return StubRun


@pytest.mark.parametrize(("overlaps", "code"), [([], 0), ([{"key": "ns/a"}], 1)])
def test_a_broken_gate_makes_the_command_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                overlaps: list[dict[str, str]], code: int) -> None:
    results = {"checker": {"recorded": True, "overlaps": overlaps, "lost": []}, "faults": []}
    monkeypatch.setattr(cli, "Run", _stub_run(results, tmp_path))
    monkeypatch.setitem(cli.SCENARIOS, "burst", lambda run: {"finals": {}})
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    monkeypatch.setattr(cli, "write_report", lambda results, folder, gates: report)
    slo = tmp_path / "slo.yaml"
    slo.write_text("overlaps: 0\nlost: 0\n")
    assert cli.main(["burst", "--slo", str(slo), "--no-progress"]) == code
