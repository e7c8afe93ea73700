"""One key layout: the names the Lua scripts write are the names ``shard_operator.keys`` gives Python."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

import shard_operator
from shard_operator import keys as layout
from shard_operator.cache import CacheWriter
from shard_operator.keys import CACHE_TEMPLATES, QUEUE_TEMPLATES, Keys, lua_names
from shard_operator.queue import RateLimitingQueue, TokenBucket
from shard_operator.sharding import Membership
from tests.queue.backends import publish_ring

KIND = "widgets.v1.example.com"


def test_every_key_of_a_controller_carries_its_hash_tag():
    keys = Keys.for_controller("widgets")
    names = [keys.dirty, keys.processing, keys.deadlines, keys.ready("s0"), keys.pending, keys.notify("s0"),
             keys.delayed, keys.failures, keys.bucket, keys.seq, keys.members, keys.ring, keys.epoch,
             keys.slots, keys.ring_next, keys.slots_next, keys.cache_marker, keys.job_index("ns/a"),
             keys.ingest_plan, keys.ingest_members, keys.ingest_synced]
    assert len(set(names)) == len(names)
    assert all(name.startswith("so:{widgets}:") for name in names)
    assert layout.index_key("widgets", "ns/a") == keys.job_index("ns/a")


@pytest.mark.parametrize("prefix", ["so:widgets", "so:{}", "{a}{b}"])
def test_a_prefix_without_exactly_one_hash_tag_is_refused(prefix):
    with pytest.raises(ValueError):
        Keys(prefix)


@pytest.mark.parametrize("shard", ["", "a|b", "{s}", "s 0"])
def test_a_shard_id_that_cannot_name_a_key_is_refused(shard):
    with pytest.raises(ValueError):
        Keys.for_controller("widgets").ready(shard)


@pytest.mark.parametrize(("templates", "prefix"), [(QUEUE_TEMPLATES, "so:{widgets}:"),
                                                   (CACHE_TEMPLATES, layout.kind_prefix(KIND))])
def test_the_lua_name_functions_build_exactly_the_python_names(client, templates, prefix):
    calls, expected = [], []
    for name, template in templates.items():
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
        sample = {field: f"ns/{field}-1" for field in fields}
        calls.append(f"K_{name}({', '.join(repr(sample[f]) for f in fields)})" if fields else f"K_{name}")
        expected.append(prefix + template.format(**sample))
    script = lua_names(templates) + "return {" + ", ".join(calls) + "}"
    assert [name.decode() for name in client.eval(script, 0, prefix)] == expected


def test_the_keys_the_scripts_write_are_the_keys_python_names(client, keys, clock):
    """Run every queue, ring and cache script, then compare ``KEYS *`` with the Python layout."""
    publish_ring(client, keys, clock, "s0", "s1")
    Membership(client, keys, "s2", clock=clock).heartbeat()
    queue = RateLimitingQueue(client, keys, clock=clock, bucket=TokenBucket(qps=100.0, burst=100))
    queue.add_many([f"ns/k{i}" for i in range(20)])
    queue.add_rate_limited("ns/late", at_least=60.0)
    held = [item for shard in ("s0", "s1") if (item := queue.get(shard, "w")) is not None]
    queue.add(held[0].key)  # dirty while processing
    queue.renew(held[0])
    queue.done(held[-1], forget=True)
    writer = CacheWriter(client)
    owner = {"apiVersion": "v1", "kind": "Widget", "name": "parent", "uid": "u-1"}
    writer.replace(KIND, [{"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "5",
                                        "ownerReferences": [owner]}}])

    written = {name.decode() for name in client.keys("*")}
    shards = ("s0", "s1", "s2")
    python_names = {keys.dirty, keys.processing, keys.deadlines, keys.pending, keys.delayed, keys.failures,
                    keys.bucket, keys.seq, keys.members, keys.ring, keys.epoch, keys.slots, keys.ring_next,
                    keys.slots_next, *(keys.ready(s) for s in shards), *(keys.notify(s) for s in shards),
                    layout.objects_key(KIND), layout.versions_key(KIND), layout.kind_prefix(KIND) + "owners",
                    layout.namespace_key(KIND, "ns"), layout.owner_key(KIND, "u-1")}
    assert written <= python_names, f"written under names Python does not know: {written - python_names}"
    assert {keys.dirty, keys.processing, keys.deadlines, keys.delayed, keys.failures, keys.bucket, keys.seq,
            keys.members, keys.ring, keys.epoch, keys.slots, layout.objects_key(KIND), layout.namespace_key(KIND, "ns"),
            layout.owner_key(KIND, "u-1")} <= written
    assert {keys.ready("s0"), keys.ready("s1")} & written


def defined_names(path: Path) -> set[str]:
    """Functions, classes and variables ``path`` defines (at any depth), not the names it imports or uses."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_the_rq_names_of_a_controllers_jobs_come_from_the_key_layout_and_nowhere_else():
    assert layout.controller_queue("widgets") == f"{layout.DEFAULT_QUEUE}.widgets" == "shard-operator.widgets"
    assert layout.job_id("widgets", "ns/a", 3, "build").startswith("so-widgets-")
    package = Path(shard_operator.__file__).parent
    naming = {"DEFAULT_QUEUE", "controller_queue", "job_id", "index_key", "alive_key", "sweep_lock_key"}
    defined_elsewhere = {f"{path.relative_to(package)}:{name}"
                         for path in package.rglob("*.py") if path != package / "keys.py"
                         for name in defined_names(path) & naming}
    assert not defined_elsewhere
    assert not (package / "jobs" / "naming.py").exists()
