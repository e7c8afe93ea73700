"""A missing tool skips a test on a developer's machine and fails it in CI (SHARD_OPERATOR_REQUIRE_TOOLS=1)."""

from __future__ import annotations

import pytest

from tests.tools import REQUIRE_TOOLS, tool_missing


def test_a_missing_tool_skips_the_test_unless_tools_are_required(monkeypatch) -> None:
    monkeypatch.delenv(REQUIRE_TOOLS, raising=False)
    with pytest.raises(pytest.skip.Exception, match="promtool is not built"):
        tool_missing("promtool is not built")
    monkeypatch.setenv(REQUIRE_TOOLS, "1")
    with pytest.raises(pytest.fail.Exception, match="promtool is not built"):
        tool_missing("promtool is not built")


def test_ci_requires_every_tool() -> None:
    from pathlib import Path

    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert f"export {REQUIRE_TOOLS}=1" in ci
