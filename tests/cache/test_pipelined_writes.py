"""The leader's batched cache writes: one round trip of EVALSHA per batch, and a Redis that lost its
scripts (restarted, flushed) still gets every write."""

from __future__ import annotations

import pytest
import redis

from shard_operator.cache import CacheReader, CacheWriter

pytestmark = pytest.mark.redis


def configmap(name: str, version: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": str(version)},
            "data": {"v": str(version)}}


def commands(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


def test_a_batch_of_upserts_is_sent_as_evalsha_without_a_script_exists_round_trip(redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    writer = CacheWriter(client)
    writer.upsert_many("ConfigMap", [configmap("warm", 1)])  # loads the script
    client.config_resetstat()
    assert writer.upsert_many("ConfigMap", [configmap(f"cm-{i}", 1) for i in range(10)]) == 10
    seen = commands(client)
    assert seen.get("evalsha") == 10, seen
    assert not any(name.startswith("script") for name in seen), seen


def test_every_write_of_a_batch_lands_after_redis_lost_its_scripts(redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    writer = CacheWriter(client)
    writer.upsert_many("ConfigMap", [configmap("warm", 1)])
    client.script_flush()
    assert writer.upsert_many("ConfigMap", [configmap(f"cm-{i}", 2) for i in range(5)]) == 5
    reader = CacheReader(client)
    assert [reader.get("ConfigMap", f"ns/cm-{i}")["data"] for i in range(5)] == [{"v": "2"}] * 5
