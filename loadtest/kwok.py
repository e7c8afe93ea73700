"""Fake nodes and pods with KWOK on the embedded control plane (the Kubemark role).

Where it sits: beside the scenarios. KWOK's controller (built from its Go module by
``tools/kwok/build.sh``, with the module's own "fast" stages in ``tools/kwok/bin/stages.yaml``) watches
Nodes annotated ``kwok.x-k8s.io/node: fake`` and the Pods bound to them and moves them through their
lifecycle stages (Node Ready, Pod Running) without any kubelet. ``python -m loadtest.kwok`` creates N
fake nodes and M pods spread over them and reports how long until every node is Ready and
every pod Running: the cluster a Pod-watching operator would be load-tested on.

    python -m loadtest.kwok --nodes 20 --pods 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from shard_operator.client import Client
from shard_operator.kube import load_api_client
from shard_operator.source import Resource
from shard_operator.testing import ControlPlane
from shard_operator.testing.process import ManagedProcess

__all__ = ["kwok_binary", "kwok_process", "main"]

TOOLS = Path(__file__).resolve().parents[1] / "tools" / "kwok"
NODES = Resource("", "v1", "nodes", namespaced=False)
PODS = Resource("", "v1", "pods")


def kwok_binary() -> Path:
    binary = TOOLS / "bin" / "kwok"
    if not binary.exists() or not (TOOLS / "bin" / "stages.yaml").exists():
        subprocess.run([str(TOOLS / "build.sh")], check=True)
    return binary


def kwok_process(kubeconfig: str | Path, log: Path) -> ManagedProcess:
    """KWOK's controller for every fake node, with the stages ``tools/kwok/build.sh`` wrote (not started)."""
    return ManagedProcess("kwok", [str(kwok_binary()), f"--kubeconfig={kubeconfig}", "--manage-all-nodes",
                                   f"--config={TOOLS / 'bin' / 'stages.yaml'}",
                                   "--cidr=10.0.0.0/16", "--node-ip=10.0.0.1"], log)


def fake_node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]}}


def fake_pod(name: str, namespace: str, node: str | None, app: str = "loadtest") -> dict[str, Any]:
    """A pod bound to ``node`` (KWOK runs it), or left unscheduled (Pending: no scheduler runs) when None."""
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                          "labels": {"app": app}},
            "spec": {**spec, "containers": [{"name": "c", "image": "fake"}],
                     "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]}}


def count(client: Client, resource: Resource, path: str, ready: Any) -> int:
    return sum(1 for item in client.request("list", resource, path).get("items", []) if ready(item))


def node_ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="loadtest-kwok-"))
    with ControlPlane() as plane, load_api_client(str(plane.kubeconfig)) as api:
        kwok = kwok_process(plane.kubeconfig, workdir / "kwok.log")
        kwok.start()
        try:
            client = Client(api, field_manager="loadtest-kwok")
            client.request("create", Resource("", "v1", "namespaces"), "/api/v1/namespaces",
                           body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kwok-load"}})
            started = time.time()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: client.create(NODES, fake_node(f"kwok-node-{i:04d}")), range(args.nodes)))
                list(pool.map(lambda i: client.create(PODS, fake_pod(f"pod-{i:06d}", "kwok-load",
                                                                      f"kwok-node-{i % args.nodes:04d}")),
                              range(args.pods)))
            created_s = time.time() - started
            result: dict[str, Any] = {"nodes": args.nodes, "pods": args.pods, "create_s": round(created_s, 1)}
            deadline = started + args.timeout
            while time.time() < deadline:
                ready = count(client, NODES, "/api/v1/nodes", node_ready)
                running = count(client, PODS, "/api/v1/namespaces/kwok-load/pods",
                                lambda p: (p.get("status") or {}).get("phase") == "Running")
                result.update({"nodes_ready": ready, "pods_running": running})
                if ready == args.nodes and running == args.pods:
                    result["all_running_s"] = round(time.time() - started, 1)
                    break
                time.sleep(1.0)
            print(json.dumps(result, indent=1))
            if "all_running_s" not in result:
                print(kwok.log_tail(20), file=sys.stderr)
                return 1
            return 0
        finally:
            kwok.stop()


if __name__ == "__main__":
    sys.exit(main())
