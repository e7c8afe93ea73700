"""Issue 8, API pressure: against an API server that answers most requests with 429 (one request in
flight at a time, priority and fairness off), the leader keeps its Lease and its informer converges.

Loops of curl (other processes, as an ordinary user: ``system:masters`` is never throttled) list
megabytes and patch objects, keeping both in-flight slots busy, so the elector's renewals and the
informer's lists and watches are refused with ``429 Retry-After: 1`` part of the time; each retries
as the server asks, and the renewals still succeed within the renew deadline. Slow: it starts its own
API server with those flags.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shard_operator.errors import TooManyRequestsError
from shard_operator.kube import request_json
from shard_operator.leaderelection import LeaderElector
from shard_operator.source import Informer, Resource
from shard_operator.testing.controlplane import ControlPlane
from tests.waiting import eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

CONFIGMAPS = Resource("", "v1", "configmaps")
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


def test_a_leader_keeps_its_lease_and_its_informer_converges_under_429s(throttled_plane, tmp_path):
    api = throttled_plane.api_client()  # the test's own writes, as admin (never throttled)
    token = operator_token(throttled_plane)
    refused = {"lease": 0, "load": 0}

    # Load from other processes (curl), so it really overlaps the code under test: each read lists a
    # few megabytes and holds the read slot while the answer is sent; the writes patch small objects
    # (large writes would make etcd, not the in-flight limit, the bottleneck of every renewal).
    ballast = "x" * 500_000
    for index in range(8):
        persist(lambda index=index: request_json(api, "POST", "/api/v1/namespaces/default/configmaps", timeout=10,
                                                 body={"metadata": {"name": f"ballast-{index}"},
                                                       "data": {"x": ballast}}))
        persist(lambda index=index: request_json(api, "POST", "/api/v1/namespaces/default/configmaps", timeout=10,
                                                 body={"metadata": {"name": f"patched-{index}"}}))
    codes = tmp_path / "load-codes"
    script = (f'while :; do curl -sk -o /dev/null -w "%{{http_code}}\\n" -H "Authorization: Bearer {token}" '
              f'{throttled_plane.server_url}/api/v1/namespaces/default/configmaps >> {codes}; done')
    writes = (f'while :; do curl -sk -o /dev/null -w "%{{http_code}}\\n" -X PATCH -H "Authorization: Bearer {token}" '
              f'-H "Content-Type: application/merge-patch+json" -d "{{\\"data\\":{{\\"n\\":\\"$RANDOM\\"}}}}" '
              f'--no-progress-meter --parallel --parallel-max 8 '
              f'"{throttled_plane.server_url}/api/v1/namespaces/default/configmaps/patched-[0-7]" >> {codes}; done')
    loaders: list[subprocess.Popen[bytes]] = []

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
        loaders.extend(subprocess.Popen(["bash", "-c", script], start_new_session=True) for _ in range(3))
        loaders.extend(subprocess.Popen(["bash", "-c", writes], start_new_session=True) for _ in range(4))
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
        for loader in loaders:
            os.killpg(loader.pid, signal.SIGKILL)  # the loop and its curl
            loader.wait(10)
        informer.stop()
        elector.stop(timeout=15, release=False)
        api.close()
