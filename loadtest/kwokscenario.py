"""The ``kwok`` scenario: a Pod-watching operator with server-side selectors over KWOK's fake cluster.

Where it sits: ``python -m loadtest kwok`` (dispatched by ``loadtest.cli``). It starts the embedded
control plane, Redis and KWOK (``loadtest.kwok``), creates N fake nodes, then runs the sample operator
``loadtest.podwatch`` (label selector ``app=loadtest``, field selector ``status.phase=Running``) and
creates M pods in three groups: *matching* (``app=loadtest``, bound to a node: KWOK runs them), *label
miss* (``app=other``, running) and *field miss* (``app=loadtest``, unscheduled: Pending, as no
scheduler runs). It waits until every matching pod carries the operator's marker and reports:
convergence, per-pod latency (create response -> marker seen by a watch), CPU and RSS of the manager
and workers, the API server's requests on pods by verb (the operator LISTs and WATCHes once per
informer start, not per pod: the selectors run on the server), the reconciled keys outside the
matching group (must be none) and the checker's I1/I2 verdict. Exit 1 when it did not converge, a
non-matching pod was reconciled, or the verdict is not clean::

    python -m loadtest kwok --nodes 200 --pods 2000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from loadtest.checker import Final, check
from loadtest.e2e import children, percentile, scrape, total
from loadtest.kwok import NODES, fake_node, fake_pod, kwok_process
from loadtest.podwatch import NAMESPACE, PODS, marked_generation
from loadtest.recorder import ENV, read_records, spans
from loadtest.sampling import _proc_stats
from shard_operator.client import Client
from shard_operator.kube import load_api_client
from shard_operator.source import Event, Informer, Resource
from shard_operator.testing import ControlPlane, RedisServer
from shard_operator.testing.process import free_port

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parents[1]
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)


def pod_requests(plane: ControlPlane) -> dict[str, float]:
    """The API server's ``apiserver_request_total`` on pods, by verb (and subresource), cluster-wide
    requests left out: the operator watches one namespace, while KWOK's controller and the garbage
    collector of kube-controller-manager list and watch pods cluster-wide (and relist when the machine
    is busy)."""
    counts: dict[str, float] = {}
    for line in plane.get_raw("/metrics").decode().splitlines():
        if (line.startswith("apiserver_request_total{") and 'resource="pods"' in line
                and 'scope="cluster"' not in line):
            verb = line.split('verb="', 1)[1].split('"', 1)[0]
            sub = line.split('subresource="', 1)[1].split('"', 1)[0]
            key = f"{verb}/{sub}" if sub else verb
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def groups(pods: int, nodes: int) -> list[tuple[str, str | None, str]]:
    """(name, node, app) per pod: half matching, a quarter missing the label, a quarter the field."""
    found = []
    for i in range(pods):
        node = f"kwok-node-{i % nodes:04d}"
        found.append((f"match-{i:06d}", node, "loadtest") if i % 4 < 2 else
                     (f"label-miss-{i:06d}", node, "other") if i % 4 == 2 else
                     (f"field-miss-{i:06d}", None, "loadtest"))
    return found


def start_manager(kubeconfig: str, redis_url: str, record: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), ENV: f"file://{record}"}
    env.update({f"SHARD_OPERATOR_{key}": value for key, value in {
        "APP": "loadtest.podwatch:operator", "KUBECONFIG": kubeconfig, "REDIS_URL": redis_url,
        "LEASE_NAMESPACE": NAMESPACE, "POD_NAME": "kwok-0", "WORKERS": str(workers), "THREADS": "4",
        "QPS": "0", "METRICS_ADDRESS": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING"}.items()})
    return subprocess.Popen([sys.executable, "-m", "shard_operator.cli", "run"], env=env, cwd=ROOT,
                            start_new_session=True)


def run(nodes: int, pods: int, workers: int = 2, timeout: float = 300.0, *, plane: ControlPlane | None = None,
        redis_url: str | None = None) -> dict[str, Any]:
    """One run; starts its own control plane and Redis unless given (a test's fixtures)."""
    workdir = Path(tempfile.mkdtemp(prefix="loadtest-kwok-"))
    with ExitStack() as stack:
        plane = plane or stack.enter_context(ControlPlane())
        redis_url = redis_url or stack.enter_context(RedisServer()).url
        api = stack.enter_context(load_api_client(str(plane.kubeconfig)))
        kwok = kwok_process(plane.kubeconfig, workdir / "kwok.log")
        kwok.start()
        stack.callback(kwok.stop)
        client = Client(api, field_manager="loadtest-kwok")
        client.request("create", NAMESPACES, "/api/v1/namespaces",
                       body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.create(NODES, fake_node(f"kwok-node-{i:04d}")), range(nodes)))
        plan = groups(pods, nodes)
        matching = {f"{NAMESPACE}/{name}" for name, node, app in plan if node and app == "loadtest"}
        marked: dict[str, float] = {}
        everything = threading.Event()

        def on_event(event: Event) -> None:
            if event.new is not None and marked_generation(event.new) is not None:
                marked.setdefault(event.key, time.monotonic())
                if len(marked) >= len(matching):
                    everything.set()

        watcher = Informer(PODS, on_event, api_client=api, namespaces=NAMESPACE, label_selector="app=loadtest")
        stack.callback(watcher.stop)
        watcher.start()
        watcher.wait_for_sync(30)
        port, record = free_port(), workdir / "records.jsonl"
        manager = start_manager(str(plane.kubeconfig), redis_url, record, port, workers)
        stack.callback(lambda: (manager.send_signal(signal.SIGTERM), manager.wait(60)))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and manager.poll() is None:
            try:
                scrape(port)
                break
            except OSError:
                time.sleep(0.2)
        before = pod_requests(plane)
        created: dict[str, float] = {}

        def create(entry: tuple[str, str | None, str]) -> None:
            name, node, app = entry
            client.create(PODS, fake_pod(name, NAMESPACE, node, app))
            created[f"{NAMESPACE}/{name}"] = time.monotonic()

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, plan))
        create_s = time.monotonic() - started
        converged = everything.wait(timeout)
        converged_s = max(marked.values()) - started if converged else None
        time.sleep(2.0)  # late reconciles of a non-matching pod would show up here
        after = pod_requests(plane)
        samples = scrape(port)
        procs = {"manager": manager.pid, **{f"worker-{i}": pid for i, pid in enumerate(children(manager.pid))}}
        usage = {name: _proc_stats(pid) for name, pid in procs.items()}
        records = spans(read_records(str(record)))
        finals = {}
        for pod in client.request("list", PODS, f"/api/v1/namespaces/{NAMESPACE}/pods").get("items", []):
            key = f"{NAMESPACE}/{pod['metadata']['name']}"
            if key in matching:
                finals[key] = Final(int(pod["metadata"].get("generation") or 0), marked_generation(pod))
        verdict = check(records, finals)
        latencies = [marked[key] - created[key] for key in matching if key in marked and key in created]
        outside = sorted({s.key for s in records} - matching)
        return {
            "nodes": nodes, "pods": pods, "matching": len(matching), "workers": workers,
            "create_s": round(create_s, 1), "converged": converged,
            "converged_s": None if converged_s is None else round(converged_s, 1),
            "marked": len(marked), "latency_p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
            "latency_p99_s": round(percentile(latencies, 0.99), 2) if latencies else None,
            "reconciles": total(samples, "controller_runtime_reconcile_total", 'controller="podwatch"'),
            "reconciled_outside_selectors": outside[:10], "reconciled_outside_count": len(outside),
            "apiserver_pod_requests": {verb: after.get(verb, 0.0) - before.get(verb, 0.0) for verb in after
                                       if after.get(verb, 0.0) - before.get(verb, 0.0)},
            "cpu_s": {name: round(u[0], 1) for name, u in usage.items() if u},
            "rss_mb": {name: round(u[1], 1) for name, u in usage.items() if u},
            "verdict": verdict.to_dict(), "clean": verdict.clean,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest kwok", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200, help="fake nodes")
    parser.add_argument("--pods", type=int, default=2000, help="pods (half of them match the selectors)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for convergence (s)")
    args = parser.parse_args(argv)
    result = run(args.nodes, args.pods, args.workers, args.timeout)
    print(json.dumps(result, indent=1))
    return 0 if result["converged"] and result["clean"] and not result["reconciled_outside_count"] else 1
