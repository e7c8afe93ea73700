"""Issue 8, API pressure: against an API server that answers most requests with 429 (one request in
flight at a time, priority and fairness off), the leader keeps its Lease and its informer converges,
and a shard worker's reconciles (a read and a status patch each) all converge too.

Loops of curl (other processes, as an ordinary user: ``system:masters`` is never throttled) list
megabytes and patch objects, keeping both in-flight slots busy, so the elector's renewals and the
informer's lists and watches are refused with ``429 Retry-After: 1`` part of the time; each retries
as the server asks, and the renewals still succeed within the renew deadline. Slow: it starts its own
API server with those flags. The tests assert outcomes (still leading, every status written), never
how long anything took: a busy machine only makes the server refuse more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shard_operator.client import Client, install_crd, open_crd
from shard_operator.errors import TooManyRequestsError
from shard_operator.keys import Keys
from shard_operator.kube import request_json
from shard_operator.leaderelection import LeaderElector
from shard_operator.queue import ExponentialFailureRateLimiter, RateLimitingQueue
from shard_operator.reconcile import Request
from shard_operator.sharding import Assigner, Membership
from shard_operator.source import Informer, Resource
from shard_operator.testing.controlplane import ControlPlane
from shard_operator.worker.runner import ShardWorker
from tests.waiting import eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

CONFIGMAPS = Resource("", "v1", "configmaps")
GAUGES = Resource("pressure.example.com", "v1", "gauges")
THROTTLED = ["--max-requests-inflight=1", "--max-mutating-requests-inflight=1",
             "--enable-priority-and-fairness=false"]


@pytest.fixture(scope="module")
def throttled_plane() -> Iterator[ControlPlane]:
    with ControlPlane(apiserver_flags=THROTTLED) as plane:
        yield plane


def operator_token(plane: ControlPlane) -> str:
    """A service account's token: the admin certificate is in ``system:masters``, which the in-flight
    limit never throttles, so the code under test must talk as an ordinary user."""
    from kubernetes import client

    with plane.api_client() as admin:
        core = client.CoreV1Api(admin)
        core.create_namespaced_service_account("default", client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="pressure")))
        client.RbacAuthorizationV1Api(admin).create_cluster_role_binding(client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="pressure"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                      name="cluster-admin"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="pressure", namespace="default")]))
        request = core.create_namespaced_service_account_token("pressure", "default",
                                                               client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
        return str(request.status.token)


def persist(call: Any) -> Any:
    """The test's own writes: retried after Retry-After until they go through."""
    while True:
        try:
            return call()
        except TooManyRequestsError as exc:
            time.sleep(exc.retry_after or 1.0)


@pytest.fixture(scope="module")
def token(throttled_plane: ControlPlane) -> str:
    """The operator's token, and the objects the load reads and patches (created once, as admin)."""
    token = operator_token(throttled_plane)
    ballast = "x" * 500_000
    with throttled_plane.api_client() as api:
        for index in range(8):
            persist(lambda index=index: request_json(api, "POST", "/api/v1/namespaces/default/configmaps",
                                                     timeout=10, body={"metadata": {"name": f"ballast-{index}"},
                                                                       "data": {"x": ballast}}))
            persist(lambda index=index: request_json(api, "POST", "/api/v1/namespaces/default/configmaps",
                                                     timeout=10, body={"metadata": {"name": f"patched-{index}"}}))
    return token


@contextlib.contextmanager
def load(plane: ControlPlane, token: str, codes: Path, *, readers: int = 3, writers: int = 4) -> Iterator[None]:
    """Load from other processes (curl), so it really overlaps the code under test: each read lists a
    few megabytes and holds the read slot while the answer is sent; the writes patch small objects
    (large writes would make etcd, not the in-flight limit, the bottleneck of every renewal). Each
    answer's HTTP code is appended to ``codes``; ``readers`` and ``writers`` loops run at once."""
    script = (f'while :; do curl -sk -o /dev/null -w "%{{http_code}}\\n" -H "Authorization: Bearer {token}" '
              f'{plane.server_url}/api/v1/namespaces/default/configmaps >> {codes}; done')
    writes = (f'while :; do curl -sk -o /dev/null -w "%{{http_code}}\\n" -X PATCH -H "Authorization: Bearer {token}" '
              f'-H "Content-Type: application/merge-patch+json" -d "{{\\"data\\":{{\\"n\\":\\"$RANDOM\\"}}}}" '
              f'--no-progress-meter --parallel --parallel-max 8 '
              f'"{plane.server_url}/api/v1/namespaces/default/configmaps/patched-[0-7]" >> {codes}; done')
    loaders: list[subprocess.Popen[bytes]] = []
    try:
        loaders.extend(subprocess.Popen(["bash", "-c", script], start_new_session=True) for _ in range(readers))
        loaders.extend(subprocess.Popen(["bash", "-c", writes], start_new_session=True) for _ in range(writers))
        yield
    finally:
        for loader in loaders:
            os.killpg(loader.pid, signal.SIGKILL)  # the loop and its curl
            loader.wait(10)


def test_a_leader_keeps_its_lease_and_its_informer_converges_under_429s(throttled_plane, token, tmp_path):
    api = throttled_plane.api_client()  # the test's own writes, as admin (never throttled)
    refused = {"lease": 0, "load": 0}
    codes = tmp_path / "load-codes"
    loading = contextlib.ExitStack()

    events: list[str] = []
    elector = LeaderElector(throttled_plane.token_client(token), namespace="default", name="pressure",
                            identity="leader-0", lease_duration=30, renew_deadline=20, retry_period=2,
                            on_started_leading=lambda: events.append("started"),
                            on_stopped_leading=lambda: events.append("stopped"))
    lease_request = elector._lock._request

    def counted(*args: Any) -> Any:
        try:
            return lease_request(*args)
        except TooManyRequestsError:
            refused["lease"] += 1
            raise
        except Exception as exc:
            failed.append(f"{time.monotonic():.1f} {args[0]} {exc!r}"[:200])
            raise
        finally:
            calls.append(f"{time.monotonic():.1f} {args[0]}")

    failed: list[str] = []
    calls: list[str] = []
    elector._lock._request = counted  # type: ignore[method-assign]
    seen: dict[str, Any] = {}
    informer = Informer(CONFIGMAPS, lambda event: seen.__setitem__(event.key, event.new),
                        api_client=throttled_plane.token_client(token), namespaces="default",
                        label_selector="pressure=yes")
    try:
        elector.start()
        eventually(lambda: elector.is_leader, timeout=60)
        loading.enter_context(load(throttled_plane, token, codes))
        informer.start()
        for index in range(20):
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{index}", "labels": {"pressure": "yes"}}, "data": {"i": str(index)}}
            persist(lambda body=body: request_json(api, "POST", "/api/v1/namespaces/default/configmaps",
                                                   body=body, timeout=10))
        eventually(lambda: len([v for v in seen.values() if v is not None]) == 20, timeout=120)
        eventually(lambda: refused["lease"] >= 2, timeout=120)  # the pressure reached the renewals
        # and one more renew deadline under it: about ten tries, each refused or not by chance (a busy CI
        # machine refuses more), where client-go's defaults would give the leader five
        time.sleep(20)
        refused["load"] = codes.read_text().split().count("429")
        assert refused["load"] > 0, refused
        assert events == ["started"] and elector.is_leader, (events, refused, failed, calls[-30:])
    finally:
        loading.close()
        informer.stop()
        elector.stop(timeout=15, release=False)
        api.close()


def test_reconciles_that_read_and_patch_status_all_converge_under_429s(throttled_plane, token, redis_url, tmp_path):
    """A shard worker (two threads, as the operator's service account) reconciles 10 objects, each a GET
    and a conditional status patch through the throttled server. The 429s escape the reconcile, the
    worker queues the key again after the server's Retry-After, and every status ends written.

    A lighter load than the elector's (one read loop, one write loop): a reconcile needs two requests to
    pass, and under the full load a busy machine passes few enough that convergence would take minutes.
    The per-key backoff is capped at 2 s for the same reason: after a dozen refusals client-go's 1000 s cap
    would have a key wait longer than the test, which is about Retry-After, not about that cap."""
    admin = throttled_plane.api_client()
    install_crd(admin, open_crd(GAUGES, "Gauge"))
    names = [f"g-{index}" for index in range(10)]
    for name in names:
        persist(lambda name=name: request_json(admin, "POST", GAUGES.path("default"), timeout=10, body={
            "apiVersion": "pressure.example.com/v1", "kind": "Gauge", "metadata": {"name": name},
            "spec": {"size": 1}}))
    client, keys = redis.Redis.from_url(redis_url), Keys.for_controller("pressure")
    Membership(client, keys, "s0").heartbeat()
    Assigner(client, keys).rebalance()
    throttled: list[str] = []

    def reconcile(request: Request, ctx: Any) -> None:
        try:
            obj = ctx.client.get(GAUGES, request.name, request.namespace)
            ctx.client.patch_status(GAUGES, obj, {"observedGeneration": obj["metadata"]["generation"]})
        except TooManyRequestsError:
            throttled.append(request.key)
            raise

    operator_api = throttled_plane.token_client(token)
    limiter = ExponentialFailureRateLimiter(client, keys, cap=2.0)
    worker = ShardWorker(RateLimitingQueue(client, keys, bucket=None, rate_limiter=limiter), reconcile,
                         controller="pressure",
                         shard="s0", owner="w1", threads=2, get_timeout=0.2, client=Client(operator_api),
                         resource=GAUGES, error_log_interval=3600)
    thread = threading.Thread(target=worker.run)

    def observed() -> list[str]:
        found = request_json(admin, "GET", GAUGES.path("default"), timeout=30)["items"]
        return sorted(g["metadata"]["name"] for g in found
                      if (g.get("status") or {}).get("observedGeneration") == g["metadata"]["generation"])

    codes = tmp_path / "load-codes"
    try:
        with load(throttled_plane, token, codes, readers=1, writers=1):
            thread.start()
            RateLimitingQueue(client, keys, bucket=None).add_many(f"default/{name}" for name in names)
            eventually(lambda: observed() == sorted(names), timeout=300, interval=1.0,
                       what="every gauge's status written")
        # the reconciles really were throttled (not only the load), and retried until they went through
        assert throttled, "no reconcile met a 429: the load did not reach the worker"
        assert codes.read_text().split().count("429") > 0
    finally:
        worker.stop()
        thread.join(timeout=30)
        operator_api.close()
        admin.close()
        client.close()
