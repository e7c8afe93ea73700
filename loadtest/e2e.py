"""End-to-end benchmark: N Widgets through the whole pipeline against the embedded control plane.

Starts etcd + kube-apiserver and redis-server (or uses ``--kubeconfig`` / ``--redis-url``), installs
the example Widget CRD, runs ``shard-operator run --app examples.widgets:operator`` as a subprocess,
then creates N Widgets from 8 client threads and measures:

- ``converged_s``: from the first create until every Widget shows
  ``status.observedGeneration == metadata.generation`` (seen by a separate watch);
- ``latency_p50_s`` / ``latency_p99_s``: per Widget, from its create's response to the watch event
  that shows its status observed (the whole pipeline: watch, cache, queue, worker, status write, watch);
- ``reconcile_mean_s``: the reconcile function's own time (controller_runtime_reconcile_time_seconds);
- ``api_requests_per_reconcile``: requests the workers sent (by verb) per reconcile, and the API
  server's own count of requests on widgets (other than the benchmark's creates and watch) per reconcile;
- ``cpu_ms_per_reconcile``: CPU time the operator's whole process tree (manager/leader, workers, job
  workers) spent from the first create until convergence, per reconcile, from its ``process_cpu_seconds_total``
  (``cpu_s`` breaks it down by process);
- ``rss_mb``: resident memory of the manager (leader) and of each worker process after the run.

Results are printed and saved to ``loadtest/results/e2e.json``. Usage::

    python -m loadtest.e2e                          # N = 1000, 2 workers, 4 threads each
    python -m loadtest.e2e --objects 200 --workers 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from examples.widgets import WIDGETS, install_crd, widget
from shard_operator.client import Client, RequestCounter, is_observed
from shard_operator.kube import load_api_client
from shard_operator.source import Event, Informer
from shard_operator.testing import ControlPlane, RedisServer
from shard_operator.testing.process import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def scrape(port: int) -> dict[tuple[str, str], float]:
    """``(name, labels)`` → value of the manager's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            samples[(name, labels.rstrip("}"))] = float(value)
    return samples


def total(samples: dict[tuple[str, str], float], name: str, *fragments: str) -> float:
    return sum(value for (n, labels), value in samples.items() if n == name and all(f in labels for f in fragments))


def cpu_by_process(samples: dict[tuple[str, str], float]) -> dict[str, float]:
    """``process`` label → ``process_cpu_seconds_total`` (the manager exports one series per process)."""
    return {labels.split('process="', 1)[1].split('"', 1)[0]: value for (name, labels), value in samples.items()
            if name == "process_cpu_seconds_total" and 'process="' in labels}


def apiserver_widget_requests(plane: ControlPlane | None) -> dict[str, float]:
    if plane is None:
        return {}
    counts: dict[str, float] = {}
    for line in plane.get_raw("/metrics").decode().splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="widgets"' in line:
            verb = line.split('verb="', 1)[1].split('"', 1)[0]
            sub = line.split('subresource="', 1)[1].split('"', 1)[0]
            key = f"{verb}/{sub}" if sub else verb
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        plane = None
        kubeconfig, redis_url = args.kubeconfig, args.redis_url
        if kubeconfig is None:
            plane = stack.enter_context(ControlPlane())
            kubeconfig = str(plane.kubeconfig)
        if redis_url is None:
            redis_url = stack.enter_context(RedisServer()).url
        api = stack.enter_context(load_api_client(kubeconfig))
        install_crd(api)
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        kube = Client(api, counter=RequestCounter(), field_manager="bench")
        kube.request("create", WIDGETS, "/api/v1/namespaces",
                     body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

        observed: dict[str, float] = {}
        everything = threading.Event()

        def on_event(event: Event) -> None:
            if event.new is not None and is_observed(event.new) and "observedGeneration" in (
                    event.new.get("status") or {}):
                observed.setdefault(event.key, time.monotonic())
                if len(observed) >= args.objects:
                    everything.set()

        watcher = Informer(WIDGETS, on_event, api_client=api, namespaces=namespace)
        stack.callback(watcher.stop)
        watcher.start()
        watcher.wait_for_sync(30)

        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.update({f"SHARD_OPERATOR_{key}": value for key, value in {
            "APP": "examples.widgets:operator", "KUBECONFIG": kubeconfig, "REDIS_URL": redis_url,
            "NAMESPACE": namespace, "LEASE_NAMESPACE": namespace, "POD_NAME": "bench-0",
            "WORKERS": str(args.workers), "THREADS": str(args.threads), "QPS": str(args.qps),
            "METRICS_ADDRESS": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING"}.items()})
        manager = subprocess.Popen([sys.executable, "-m", "shard_operator.cli", "run"], env=env, cwd=ROOT,
                                   start_new_session=True)
        stack.callback(lambda: (manager.send_signal(signal.SIGTERM), manager.wait(60)))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or manager.poll() is not None:
                raise SystemExit("the manager did not become ready")
            time.sleep(0.1)

        before = apiserver_widget_requests(plane)
        cpu_before = cpu_by_process(scrape(port))
        created: dict[str, float] = {}

        def create(i: int) -> None:
            name = f"w-{i:05d}"
            kube.create(WIDGETS, widget(name, namespace, size=i))
            created[f"{namespace}/{name}"] = time.monotonic()

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.objects)))
        create_s = time.monotonic() - started
        if not everything.wait(args.timeout):
            raise SystemExit(f"only {len(observed)} of {args.objects} widgets converged in {args.timeout}s")
        converged_s = max(observed.values()) - started
        time.sleep(1.0)  # let the last metrics land
        after = apiserver_widget_requests(plane)
        samples = scrape(port)
        reconciles = total(samples, "controller_runtime_reconcile_total", 'controller="widgets"')
        cpu = {name: seconds - cpu_before.get(name, 0.0) for name, seconds in cpu_by_process(samples).items()}
        worker_requests = {verb: total(samples, "shard_operator_api_requests_total", f'verb="{verb}"')
                           for verb in ("get", "list", "create", "patch", "update", "delete")}
        server_side = {verb: after.get(verb, 0.0) - before.get(verb, 0.0) for verb in after}
        server_side.pop("POST", None)   # the benchmark's own creates
        server_side.pop("WATCH", None)  # the watches (the benchmark's and the leader's)
        latencies = [observed[key] - created[key] for key in created if key in observed]
        workers = children(manager.pid)
        return {
            "objects": args.objects, "workers": args.workers, "threads": args.threads, "qps": args.qps,
            "create_s": round(create_s, 2), "converged_s": round(converged_s, 2),
            "objects_per_s": round(args.objects / converged_s, 1),
            "latency_p50_s": round(percentile(latencies, 0.50), 3),
            "latency_p99_s": round(percentile(latencies, 0.99), 3),
            "reconciles": reconciles,
            "reconcile_mean_s": round(total(samples, "controller_runtime_reconcile_time_seconds_sum")
                                      / max(total(samples, "controller_runtime_reconcile_time_seconds_count"), 1),
                                      4),
            "api_requests_per_reconcile": {
                "workers": {verb: round(n / reconciles, 3) for verb, n in worker_requests.items() if n},
                "apiserver_widgets": {verb: round(n / reconciles, 3) for verb, n in server_side.items() if n},
            },
            "cpu_ms_per_reconcile": round(1000 * sum(cpu.values()) / max(reconciles, 1), 2),
            "cpu_s": {name: round(seconds, 2) for name, seconds in sorted(cpu.items())},
            "rss_mb": {"manager": rss_mb(manager.pid), "workers": [rss_mb(pid) for pid in workers]},
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000, help="Widgets to create (default 1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--qps", type=float, default=0.0, help="global work-queue rate limit (0: none)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--kubeconfig", default=None, help="use this cluster instead of an embedded one")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of an embedded one")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2e.json")
    args = parser.parse_args(argv)
    result = run(args)
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
