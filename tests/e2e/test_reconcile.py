"""One manager against the real control plane and redis-server: every Widget is reconciled through the
whole pipeline (informer → shared cache → work queue → worker process → status write)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from examples.widgets import WIDGETS, widget
from shard_operator.client import Client
from shard_operator.testing import ControlPlane
from tests.e2e.observed import unobserved

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]

N = 200


def apiserver_requests(control_plane: ControlPlane, verb: str, resource: str = "widgets") -> float:
    """The API server's own count of namespaced ``verb`` requests on ``resource`` (all codes, all clients).

    Only namespaced requests: the manager watches the test's namespace, while the embedded
    kube-controller-manager's garbage collector lists every resource cluster-wide, whenever its discovery
    finds a new one (every 30 s)."""
    wanted = (f'resource="{resource}"', f'verb="{verb}"', 'subresource=""', 'scope="namespace"')
    return sum(float(line.rsplit(" ", 1)[1]) for line in control_plane.get_raw("/metrics").decode().splitlines()
               if line.startswith("apiserver_request_total{") and all(label in line for label in wanted))


def successes(manager) -> float:
    return manager.metric("controller_runtime_reconcile_total", controller="widgets", result="success")


def test_every_widget_is_reconciled_status_writes_trigger_nothing_spec_changes_do_and_workers_never_read(
        control_plane, kube: Client, namespace, redis_url, start_manager) -> None:
    manager = start_manager("pod-0")
    manager.wait_ready()
    assert manager.leading

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda i: kube.create(WIDGETS, widget(f"w-{i:03d}", namespace, size=i)),
                                range(N)))
    manager.wait_for(lambda: not unobserved(redis_url, namespace, N), 90, f"{N} widgets to be observed")
    manager.wait_for(lambda: successes(manager) >= N, 10, "the reconcile metric")
    assert successes(manager) == N  # the reconciler's own status writes did not trigger more reconciles

    # Steady state from here: the API server's counts of reads of widgets must not move.
    gets, lists = apiserver_requests(control_plane, "GET"), apiserver_requests(control_plane, "LIST")

    # Status-only writes (as another controller might make) trigger nothing.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda obj: kube.patch(WIDGETS, obj, {"status": {"note": "external"}},
                                             subresource="status"), created[:20]))
    # Spec changes trigger exactly one successful reconcile each.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda obj: kube.patch(WIDGETS, obj, {"spec": {"size": -1}}), created[20:40]))
    manager.wait_for(lambda: not unobserved(redis_url, namespace, N), 30, "spec changes to be observed")
    manager.wait_for(lambda: successes(manager) >= N + 20, 10, "the reconcile metric")
    assert successes(manager) == N + 20

    # Rapid updates of one widget: at most one reconcile per generation (waiting changes collapse).
    latest = created[40]
    for size in range(10):
        latest = kube.patch(WIDGETS, latest, {"spec": {"size": 1000 + size}})
    manager.wait_for(lambda: not unobserved(redis_url, namespace, N), 30, "the rapid updates to be observed")
    time.sleep(0.5)
    assert N + 20 < successes(manager) <= N + 20 + 10

    # The workers read only from the shared cache: counted on the client side in every worker process…
    for verb in ("get", "list"):
        assert manager.metric("shard_operator_api_requests_total", verb=verb) == 0
    assert manager.metric("shard_operator_api_requests_total", verb="patch",
                          resource=f"{WIDGETS.name}/status") <= successes(manager) + 10
    # …and by the API server itself: no GET at all, and not one LIST per reconcile (about 230 ran since
    # `lists` was read). The control plane is shared by the session, so other clients (managers of other
    # tests, a relisting informer) may add a LIST or two; the workers' own zero is asserted above.
    assert apiserver_requests(control_plane, "GET") == gets
    assert apiserver_requests(control_plane, "LIST") - lists <= 3
    assert kube.counter.total("get") == 0 and kube.counter.total("list") == 0

    # The metrics of every process are served by the manager.
    _, text = manager.get("/metrics")
    assert re.search(r'^leader_election_master_status\{name="widgets"\} 1\.0$', text, re.M)
    assert manager.metric("shard_operator_live_shards", controller="widgets") == 2
    status, body = manager.get("/healthz")
    assert (status, body) == (200, "ok")
