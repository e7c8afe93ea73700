"""The import contracts in ``.importlinter`` (checked by ``lint-imports`` in ``make test``) cover every
module of the package: a new module is either a boundary named here or checked like the rest."""

from __future__ import annotations

import configparser
import pkgutil
from pathlib import Path

import pytest

import shard_operator

ROOT = Path(__file__).resolve().parents[1]

#: The only places each client library may be imported (besides the test environment).
ALLOWED = {
    "kubernetes-boundary": {"kube", "testing"},
    "redis-boundary": {"storage", "queue", "cache", "sharding", "jobs", "ingest", "testing"},
}


def contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return parser


def top_level_modules() -> set[str]:
    return {module.name for module in pkgutil.iter_modules(shard_operator.__path__)}


def checked(contract: str) -> set[str]:
    lines = contracts()[f"importlinter:contract:{contract}"]["source_modules"].split()
    return {line.removeprefix("shard_operator.") for line in lines}


@pytest.mark.parametrize("contract", sorted(ALLOWED))
def test_every_module_outside_a_boundary_is_checked_by_the_boundary_contract(contract):
    assert top_level_modules() - ALLOWED[contract] == checked(contract)


def test_the_authors_contract_is_checked_for_indirect_imports_of_either_client():
    section = contracts()["importlinter:contract:reconcile-api"]
    assert {"context", "reconcile"} <= {m.removeprefix("shard_operator.") for m in section["source_modules"].split()}
    assert set(section["forbidden_modules"].split()) == {"kubernetes", "urllib3", "redis", "rq"}
    assert "allow_indirect_imports" not in section
