"""The queue keeps its invariant in one package: nothing in ``queue/`` imports ``sharding/``."""

from __future__ import annotations

import ast
from pathlib import Path

import shard_operator.queue

QUEUE = Path(shard_operator.queue.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_queue_imports_sharding():
    offenders = {path.name: found for path in QUEUE.glob("*.py")
                 if (found := sorted(n for n in imported_modules(path) if n.startswith("shard_operator.sharding")))}
    assert not offenders
