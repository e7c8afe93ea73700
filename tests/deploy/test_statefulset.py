"""The generated StatefulSet runs and scales for real: kube-controller-manager's StatefulSet controller creates
and deletes the pod objects, and the pod runner (tests/deploy/pod_runner.py, a stand-in for the kubelet) runs
one operator process per pod with exactly the container's args and env and its ServiceAccount's own token,
against a Redis that needs the password from the Secret. The StatefulSet is scaled 2 → 5 → 2 through its scale
subresource (what ``kubectl scale`` does) while Websites keep changing; every Website converges, and the
reconcile records prove I1 (no two reconciles of a site overlap) and I2 (the last change of each site was
reconciled) across the changes of the shard ring. The Redis password reaches the pods as the Secret's mounted
file and is in no process's environment."""

from __future__ import annotations

import base64
import copy
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from examples.website import WEBSITES
from loadtest.checker import Final, check
from loadtest.recorder import read_records, spans
from shard_operator.client import Client, find_condition
from shard_operator.source import Resource
from shard_operator.testing import RedisServer
from tests.deploy.pod_runner import STATEFULSETS, PodRunner
from tests.deploy.test_cluster import ROOT, kustomize
from tests.deploy.test_rbac_as_service_account import KINDS
from tests.waiting import eventually

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]

SECRETS = Resource("", "v1", "secrets")
SITES = 12
NAME = "shard-operator"
#: What the test changes in the dev overlay's operator container, by env name (anything else is the overlay's).
TEST_ENV = {"SHARD_OPERATOR_WORKERS": "1", "SHARD_OPERATOR_DRAIN_TIMEOUT": "5"}


def json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with the RFC 6902 ``add`` and ``replace`` operations applied (a copy; enough for the rewrites here)."""
    doc = copy.deepcopy(doc)
    for operation in operations:
        assert operation["op"] in ("add", "replace"), operation
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list) and last == "-":
            target.append(operation["value"])
        elif isinstance(target, list) and operation["op"] == "add":
            target.insert(int(last), operation["value"])
        elif isinstance(target, list):
            target[int(last)] = operation["value"]
        else:
            assert operation["op"] == "add" or last in target, operation
            target[last] = operation["value"]
    return doc


def dev_overlay(namespace: str, records: Path) -> dict[str, list[dict[str, Any]]]:
    """The dev overlay as kustomize renders it, by kind: its operator StatefulSet, its RBAC and its Redis Secret,
    moved into ``namespace`` (cluster-scoped names made unique to it) and patched only where the test needs to:
    the recorded Website operator (same name and handlers, so the same RBAC), one worker and a short drain, the
    watch limited to the pod's own namespace, and every reconcile recorded."""
    docs = kustomize(ROOT / "deploy" / "overlays" / "dev")
    wanted = {"StatefulSet", "Secret", *KINDS}
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        if doc["kind"] not in wanted or (doc["kind"] == "StatefulSet" and doc["metadata"]["name"] != NAME):
            continue
        cluster_scoped = not KINDS[doc["kind"]].namespaced if doc["kind"] in KINDS else False
        operations = [{"op": "replace", "path": "/metadata/name", "value": f"{NAME}-{namespace}"}] \
            if cluster_scoped else [{"op": "replace", "path": "/metadata/namespace", "value": namespace}]
        if doc["kind"].endswith("Binding"):
            operations += [{"op": "replace", "path": f"/subjects/{index}/namespace", "value": namespace}
                           for index in range(len(doc["subjects"]))]
            if doc["kind"] == "ClusterRoleBinding":
                operations.append({"op": "replace", "path": "/roleRef/name", "value": f"{NAME}-{namespace}"})
        if doc["kind"] == "StatefulSet":
            container = "/spec/template/spec/containers/0"
            env = [entry["name"] for entry in doc["spec"]["template"]["spec"]["containers"][0]["env"]]
            operations += [
                {"op": "replace", "path": f"{container}/args",
                 "value": ["run", "--app", "tests.deploy.operator_process:recorded_website"]},
                *({"op": "replace", "path": f"{container}/env/{env.index(name)}/value", "value": value}
                  for name, value in TEST_ENV.items()),
                {"op": "add", "path": f"{container}/env/-", "value": {"name": "SHARD_OPERATOR_NAMESPACE", "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.namespace"}}}},
                {"op": "add", "path": f"{container}/env/-", "value": {"name": "LOADTEST_RECORD",
                                                                       "value": f"file://{records}"}},
                {"op": "replace", "path": "/spec/template/spec/terminationGracePeriodSeconds", "value": 20}]
        found.setdefault(doc["kind"], []).append(json_patch(doc, operations))
    return found


class ChangeStream:
    """Changes the pages of the sites, one after another, every ``pause`` seconds, from a thread."""

    def __init__(self, kube: Client, namespace: str, names: list[str], pause: float = 0.25) -> None:
        self.kube, self.namespace, self.names, self.pause = kube, namespace, names, pause
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-stream", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.pause):
            name = self.names[self.changes % len(self.names)]
            site = self.kube.get(WEBSITES.resource, name, self.namespace)
            self.kube.patch(WEBSITES.resource, site, {"spec": {"pages": [
                {"path": "/", "title": f"{name} v{self.changes}"}]}})
            self.changes += 1

    def __enter__(self) -> ChangeStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def session_environments(session: int) -> list[bytes]:
    """The environment (``/proc/<pid>/environ``) of every process of the session ``session`` (a pod's processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    found.append((entry / "environ").read_bytes())
            except OSError:  # gone meanwhile
                continue
    return found


def finals(kube: Client, namespace: str, names: list[str]) -> dict[str, Final]:
    """Each site's generation, and the generation its status says is published (None while not Ready)."""
    found = {}
    for name in names:
        site = kube.get(WEBSITES.resource, name, namespace)
        ready = (find_condition(site, "Ready") or {}).get("status") == "True"
        observed = (site.get("status") or {}).get("observedGeneration")
        found[f"{namespace}/{name}"] = Final(site["metadata"]["generation"], observed if ready else None)
    return found


def caught_up(kube: Client, namespace: str, names: list[str], stream: ChangeStream) -> None:
    """Wait until every site was changed once more, and each of those changes was published (the stream goes on)."""
    start = stream.changes
    eventually(lambda: stream.changes >= start + len(names), 60, "one more change to every site", interval=0.2)
    wanted = {name: kube.get(WEBSITES.resource, name, namespace)["metadata"]["generation"] for name in names}

    def published() -> bool:
        return all(((kube.get(WEBSITES.resource, name, namespace).get("status") or {}).get("observedGeneration")
                    or 0) >= generation for name, generation in wanted.items())

    eventually(published, 180, "every site's change to be published by this ring", interval=0.5)


def scale(kube: Client, runner: PodRunner, name: str, namespace: str, replicas: int) -> None:
    """``kubectl scale``, then wait for the controller's pods, their processes and their readiness."""
    kube.patch(STATEFULSETS, {"metadata": {"name": name, "namespace": namespace}},
               {"spec": {"replicas": replicas}}, subresource="scale")
    expected = {f"{name}-{ordinal}" for ordinal in range(replicas)}
    eventually(lambda: {pod["metadata"]["name"] for pod in runner.pods()} == expected, 60,
               f"the StatefulSet controller to leave exactly the pods {sorted(expected)}", interval=0.2)
    eventually(lambda: runner.names() == expected, 120, f"one process per pod of {sorted(expected)}", interval=0.2)
    eventually(lambda: (kube.get(STATEFULSETS, name, namespace).get("status") or {}).get("readyReplicas")
               == replicas, 180, f"{replicas} ready replicas (each pod's workers in the shard ring)", interval=0.5)


def test_the_statefulset_controllers_pods_run_as_operators_and_scaling_2_to_5_to_2_loses_no_change(
        control_plane: Any, namespace: str, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    (tmp_path / "pods").mkdir()
    overlay = dev_overlay(namespace, records)
    (workload,) = overlay["StatefulSet"]
    (secret,) = overlay["Secret"]  # the overlay's secretGenerator: its hashed name is what the pods reference
    password = base64.b64decode(secret["data"]["password"]).decode()
    objects = [obj for kind in KINDS for obj in overlay[kind]]
    with RedisServer() as server, control_plane.api_client() as api, control_plane.api_client() as runner_api:
        redis.Redis.from_url(server.url).config_set("requirepass", password)
        WEBSITES.install(api)
        admin = Client(api, field_manager="statefulset-tests")
        for obj in objects:
            admin.create(KINDS[obj["kind"]], obj)
        admin.create(SECRETS, secret)
        runner = PodRunner(Client(runner_api, field_manager="pod-runner"), control_plane, namespace, NAME,
                           tmp_path / "pods", hosts={"redis:6379": f"127.0.0.1:{server.port}"})
        names = [f"site-{i}" for i in range(SITES)]
        try:
            with runner.following():
                admin.create(STATEFULSETS, workload)
                assert workload["spec"]["replicas"] == 2  # the dev overlay's
                scale(admin, runner, NAME, namespace, 2)
                for name, run in list(runner.running.items()):  # the downward API and the Secret, resolved per pod
                    assert run.env["POD_NAME"] == name
                    assert run.env["SHARD_OPERATOR_REDIS_URL"] == f"redis://127.0.0.1:{server.port}/0"
                    assert Path(run.env["SHARD_OPERATOR_REDIS_PASSWORD_FILE"]).read_text() == password
                    assert session_environments(run.process.pid), "the pod's processes are running"
                    for environ in session_environments(run.process.pid):  # the manager, workers, job workers
                        assert password.encode() not in environ
                    kubeconfig = yaml.safe_load(Path(run.env["KUBECONFIG"]).read_text())
                    assert list(kubeconfig["users"][0]["user"]) == ["token"]  # the ServiceAccount's, not the admin
                for name in names:
                    admin.create(WEBSITES.resource, WEBSITES.object(name, namespace,
                                                                    pages=[{"path": "/", "title": name}]))
                with ChangeStream(admin, namespace, names) as stream:
                    for replicas in (2, 5, 2):
                        scale(admin, runner, NAME, namespace, replicas)
                        caught_up(admin, namespace, names, stream)
                removed = [f"{NAME}-{ordinal}" for ordinal in (2, 3, 4)]
                assert {name: runner.stopped.get(name) for name in removed} == dict.fromkeys(removed, 0), \
                    "the processes of the deleted pods drain and exit cleanly"
                eventually(lambda: all(f.converged == f.generation for f in finals(admin, namespace, names).values()),
                           240, "every Website to converge", interval=0.5)
                assert all(run.restarts == 0 for run in list(runner.running.values())), "no process crashed"
        except BaseException:
            print(runner.logs())
            raise
        finally:
            for obj in objects:
                resource = KINDS[obj["kind"]]
                if not resource.namespaced:
                    admin.request("delete", resource, f"{resource.path()}/{obj['metadata']['name']}")

        reconciles = spans(read_records(str(records)))
        verdict = check(reconciles, finals(admin, namespace, names), changes=stream.changes + SITES)
        by_pod = {ordinal for ordinal in range(5) for s in reconciles
                  if (s.shard or "").startswith(f"{NAME}-{ordinal}-")}
        print(f"I1 overlaps {len(verdict.overlaps)} (fenced {len(verdict.fenced_overlaps)}), "
              f"I2 lost {len(verdict.lost)}, unfinished {verdict.unfinished}; {stream.changes} changes, "
              f"{len(reconciles)} reconciles on pods {sorted(by_pod)}")
        assert not verdict.overlaps, verdict.overlaps[:3]  # I1
        assert not verdict.lost, verdict.lost  # I2, from the final state
        for key, final in finals(admin, namespace, names).items():  # I2: the last change was reconciled
            assert any(s.key == key and s.outcome == "ok" and s.generation == final.generation for s in reconciles)
        assert verdict.unfinished == 0, "every process drained its reconciles before it exited"
        assert by_pod & {2, 3, 4} and by_pod & {0, 1}, f"reconciles ran on the pods {sorted(by_pod)}"
        logs = "".join(log.read_text(errors="replace") for log in (tmp_path / "pods").glob("*.log"))
        assert "Forbidden" not in logs and "NOAUTH" not in logs
