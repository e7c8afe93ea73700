"""The README's "Writing an operator" snippets run as written: the operator module, its FakeContext unit
tests, and (with the control plane) its OperatorRunner integration test."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shard_operator.testing import OperatorRunner

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet(filename: str) -> str:
    """The README's python block that starts with ``# <filename>``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (found,) = [block for block in blocks if block.startswith(f"# {filename}\n")]
    return found


@pytest.fixture
def readme_modules(tmp_path: Path) -> Iterator[Callable[[str], ModuleType]]:
    """Writes the README's files into ``tmp_path`` and imports them by name."""
    for name in ("myoperator.py", "test_myoperator.py", "test_myoperator_integration.py"):
        (tmp_path / name).write_text(snippet(name))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("myoperator", "test_myoperator", "test_myoperator_integration"):
            sys.modules.pop(name, None)


def test_the_readme_unit_tests_of_the_example_operator_pass(readme_modules):
    tests = readme_modules("test_myoperator")
    names = [name for name in dir(tests) if name.startswith("test_")]
    assert len(names) == 2
    for name in names:
        getattr(tests, name)()


@pytest.mark.controlplane
@pytest.mark.redis
@pytest.mark.slow
def test_the_readme_integration_test_of_the_example_operator_passes(
        readme_modules, control_plane, namespace, operator_runner, tmp_path):
    tests = readme_modules("test_myoperator_integration")

    def runner_in_tmp_path(app: str, **options: Any) -> OperatorRunner:
        return operator_runner(app, cwd=tmp_path, **options)

    tests.test_the_operator_creates_the_configmap(control_plane, namespace, runner_in_tmp_path)
