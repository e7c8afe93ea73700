"""What the end-to-end tests read to see the operator's progress without asking the API server."""

from __future__ import annotations

from pathlib import Path

import redis

from examples.widgets import WIDGETS
from shard_operator.cache import CacheReader
from shard_operator.client import is_observed

ROOT = Path(__file__).resolve().parents[2]


def unobserved(redis_url: str, namespace: str, expected: int) -> list[str]:
    """Widgets of ``namespace`` in the shared cache whose status is behind their spec (or missing ones).

    Reading the cache (which the leader fills from its watch) costs the API server nothing, so
    polling it does not disturb the request counts a test checks.
    """
    client = redis.Redis.from_url(redis_url)
    try:
        widgets = CacheReader(client).list(WIDGETS, namespace)
    finally:
        client.close()
    behind = [w["metadata"]["name"] for w in widgets if not (is_observed(w) and "observedGeneration" in
                                                            (w.get("status") or {}))]
    return behind + ["(missing)"] * max(0, expected - len(widgets))
