"""The Grafana dashboard against a real Prometheus: Prometheus (built by tools/prometheus/build.sh) scrapes
the Website operator's /metrics during a short load, and every panel's query returns data."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.website import CONFIGMAPS, WEBSITES
from shard_operator.client import Client
from shard_operator.manifests.monitoring import PANELS, dashboard
from shard_operator.testing.process import free_port
from tests.deploy.operator_process import OperatorProcess
from tests.tools import tool_missing
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
#: Panels that cannot have data yet, with the reason (strict xfail: fixing the cause turns them green).
MISSING: dict[str, str] = {}


def prometheus_binary() -> Path:
    for folder in (os.environ.get("SHARD_OPERATOR_PROMETHEUS_BIN"), ROOT / "tools" / "prometheus" / "bin"):
        if folder and (Path(folder) / "prometheus").is_file():
            return Path(folder) / "prometheus"
    tool_missing("prometheus is not built: run tools/prometheus/build.sh (Go >= 1.24)")


def test_the_dashboard_is_generated_with_one_panel_per_query_group():
    board = dashboard()
    assert [panel["title"] for panel in board["panels"]] == [title for title, _, _ in PANELS]
    for panel, (_, unit, queries) in zip(board["panels"], PANELS, strict=True):
        assert panel["type"] == "timeseries" and panel["fieldConfig"]["defaults"]["unit"] == unit
        assert [target["expr"] for target in panel["targets"]] == [expr for expr, _ in queries]


class Prometheus:
    """Prometheus scraping every ``(address, pod)`` target each second (a target may come up later)."""

    def __init__(self, targets: list[tuple[str, str]], folder: Path) -> None:
        self.port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "shard-operator", "static_configs": [
                {"targets": [address], "labels": {"pod": pod, "namespace": "test"}} for address, pod in targets]}]}))
        self.log = folder / "prometheus.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([str(prometheus_binary()), f"--config.file={config}",
                                             f"--storage.tsdb.path={folder / 'data'}",
                                             f"--web.listen-address=127.0.0.1:{self.port}"],
                                            stdout=out, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scraping(self) -> bool:
        try:
            return bool(self.query("up == 1"))
        except OSError:  # not listening yet
            return False

    def close(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture(scope="module")
def scraped(control_plane: Any, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A short load on the Website operator, scraped by Prometheus every second: sites published, one held
    back by a ConfigMap in the way (errors and retries), a second pod joining (a rebalance)."""
    from kubernetes import client as k8s

    folder = tmp_path_factory.mktemp("dashboard")
    namespace = "dashboard-load"
    redis_url = redis_server.url_for_db(15)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with control_plane.api_client() as api:
        WEBSITES.install(api)
        with contextlib.suppress(k8s.ApiException):
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        kube = Client(api, field_manager="dashboard-tests")
        fast = {"CLAIM_TTL": "3", "MEMBER_TTL": "2", "HEARTBEAT_INTERVAL": "0.5"}  # gauges refresh every second
        pods = [OperatorProcess(control_plane.kubeconfig, redis_url, namespace, folder / "pod-0.log", **fast)]
        second = f"127.0.0.1:{free_port()}"
        prometheus = Prometheus([(f"127.0.0.1:{pods[0].port}", "website-0"), (second, "website-1")], folder)
        try:
            eventually(prometheus.scraping, 60, "Prometheus to scrape the operator", interval=0.5)
            # a ConfigMap named like the site's content, owned by nobody: the create fails until it is removed
            kube.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "blocked-content", "namespace": namespace}})
            for index in range(12):  # spread over a few scrapes, so rates see the increase
                kube.create(WEBSITES.resource, WEBSITES.object(f"site-{index}", namespace, pages=[
                    {"path": "/", "title": f"Site {index}"}]))
                time.sleep(0.5)
            kube.create(WEBSITES.resource, WEBSITES.object("blocked", namespace, pages=[{"path": "/", "title": "B"}]))
            pods.append(OperatorProcess(control_plane.kubeconfig, redis_url, namespace, folder / "pod-1.log", **fast,
                                        POD_NAME="website-1", METRICS_ADDRESS=second))
            eventually(lambda: prometheus.query("sum(rate(controller_runtime_reconcile_errors_total[1m])) > 0"), 90,
                       "reconcile errors (retries of the blocked site) to be scraped", interval=1)
            eventually(lambda: prometheus.query("sum(rate(controller_runtime_reconcile_total[1m])) > 0"), 60,
                       "reconciles to be scraped", interval=1)
            # the ConfigMap in the way goes: the blocked site publishes (its retries end)
            kube.delete(CONFIGMAPS, kube.get(CONFIGMAPS, "blocked-content", namespace), precondition=False)
            yield prometheus
            picture = os.environ.get("SHARD_OPERATOR_DASHBOARD_PNG")
            if picture:
                from tests.deploy.plot_dashboard import plot_dashboard

                keep_editing(kube, namespace, pods, seconds=100)
                plot_dashboard(f"http://127.0.0.1:{prometheus.port}", Path(picture), seconds=150)
        finally:
            prometheus.close()
            for pod in pods:
                pod.close()


def keep_editing(kube: Client, namespace: str, pods: list[OperatorProcess], *, seconds: float) -> None:
    """For the picture only: edit a site a second for ``seconds``, a ConfigMap in a new site's way for a
    while (errors and retries), and the second pod leaving half-way (a rebalance to one pod)."""
    started = time.monotonic()
    blocker = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late-content", "namespace": namespace}}
    kube.create(CONFIGMAPS, blocker)
    kube.create(WEBSITES.resource, WEBSITES.object("late", namespace, pages=[{"path": "/", "title": "Late"}]))
    edit = 0
    while time.monotonic() - started < seconds:
        site = kube.get(WEBSITES.resource, f"site-{edit % 12}", namespace)
        kube.patch(WEBSITES.resource, site, {"spec": {"pages": [{"path": "/", "title": f"Edit {edit}"}]}})
        edit += 1
        elapsed = time.monotonic() - started
        if len(pods) > 1 and elapsed > seconds / 2:
            pods.pop().close()
        if elapsed > seconds / 3 and blocker is not None:
            kube.delete(CONFIGMAPS, kube.get(CONFIGMAPS, "late-content", namespace), precondition=False)
            blocker = None
        time.sleep(1.0)
    time.sleep(5)  # the last scrapes


@pytest.mark.controlplane
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("title, queries", [
    pytest.param(title, queries, marks=[pytest.mark.xfail(reason=MISSING[title], strict=True)] if title in MISSING
                 else [], id=title) for title, _, queries in PANELS])
def test_every_panel_query_returns_data_from_a_real_prometheus(scraped: Prometheus, title: str,
                                                               queries: list[tuple[str, str]]) -> None:
    results = {expr: scraped.query(expr) for expr, _ in queries}  # each is valid PromQL (status success)
    empty = [expr for expr, result in results.items() if not result]
    assert not empty, f"panel {title!r}: these queries returned no data: {empty}"
