"""What a test does when a tool it drives (promtool, prometheus, kustomize, hadolint, the compose schema) is
missing: skip on a developer's machine that has not built it, fail in CI.

``make setup`` builds or installs every one of these tools, so in CI a missing tool is a broken path, not a
choice; ``.ci/run`` sets ``SHARD_OPERATOR_REQUIRE_TOOLS=1`` so such a test fails instead of passing as a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["REQUIRE_TOOLS", "tool_missing"]

REQUIRE_TOOLS = "SHARD_OPERATOR_REQUIRE_TOOLS"


def tool_missing(reason: str) -> NoReturn:
    """Skip the calling test for ``reason``, or fail it when ``$SHARD_OPERATOR_REQUIRE_TOOLS`` is ``1``."""
    if os.environ.get(REQUIRE_TOOLS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_TOOLS}=1: a missing tool fails instead of skipping)", pytrace=False)
    pytest.skip(reason)
