"""The embedded control plane is a real Kubernetes API server: the behaviours shard-operator
relies on (CRDs, generation, optimistic concurrency, watch, selectors, RBAC, Leases) hold."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from shard_operator.testing import ControlPlane

pytestmark = pytest.mark.controlplane

GROUP, VERSION, PLURAL, KIND = "test.shard-operator.dev", "v1", "widgets", "Widget"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def widget_crd(api: client.ApiClient) -> Iterator[None]:
    extensions = client.ApiextensionsV1Api(api)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"plural": PLURAL, "singular": "widget", "kind": KIND},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            }],
        },
    }
    extensions.create_custom_resource_definition(crd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status
        if any(c.type == "Established" and c.status == "True" for c in (status.conditions or [])):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the CRD was not established within 30 s")
    # Discovery of the new group can lag the Established condition by a moment.
    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + 30
    while True:
        try:
            objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            break
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield


def make_widget(name: str, spec: dict | None = None, labels: dict | None = None) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec or {"size": 1}}


@pytest.fixture
def objects(api: client.ApiClient, widget_crd: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


class TestCustomResources:
    def test_a_custom_resource_can_be_created_read_listed_and_deleted(self, objects, namespace):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_widget("a"))
        got = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a")
        assert got["spec"] == {"size": 1}
        listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a")
        with pytest.raises(ApiException) as info:
            objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a")
        assert info.value.status == 404

    def test_generation_increases_on_spec_change_and_not_on_status_update(self, objects, namespace):
        created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_widget("g"))
        assert created["metadata"]["generation"] == 1
        created["status"] = {"observedGeneration": 1}
        after_status = objects.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "g",
                                                                       created)
        assert after_status["metadata"]["generation"] == 1
        assert after_status["status"] == {"observedGeneration": 1}
        after_status["spec"] = {"size": 2}
        after_spec = objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "g",
                                                              after_status)
        assert after_spec["metadata"]["generation"] == 2

    def test_an_update_with_a_stale_resource_version_gets_409_conflict(self, objects, namespace):
        first = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_widget("c"))
        stale = json.loads(json.dumps(first))
        first["spec"] = {"size": 5}
        objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "c", first)
        stale["spec"] = {"size": 6}
        with pytest.raises(ApiException) as info:
            objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "c", stale)
        assert info.value.status == 409


class TestWatch:
    def test_a_watch_from_a_resource_version_delivers_later_events_in_order(self, objects, namespace):
        start = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        rv = start["metadata"]["resourceVersion"]
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_widget("w1"))
        objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1", {"spec": {"size": 3}})
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_widget("w2"))
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1")
        seen = []
        stream = watch.Watch()
        for event in stream.stream(objects.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                   resource_version=rv, timeout_seconds=5):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 4:
                stream.stop()
        assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]

    def test_a_watch_from_a_compacted_resource_version_gets_410_gone(self, control_plane, objects, namespace):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, make_widget("old"))
        for size in range(3):
            objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "old",
                                                   {"spec": {"size": size + 10}})
        latest = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        compact_etcd(control_plane, int(latest["metadata"]["resourceVersion"]))
        # Revision 2 is older than both etcd's compacted history and the API server's watch
        # cache window; the server answers with an ERROR event of code 410, which the client's
        # watch turns into ApiException(410) once its one retry also gets Gone.
        with pytest.raises(ApiException) as info:
            for _event in watch.Watch().stream(objects.list_namespaced_custom_object, GROUP, VERSION,
                                               namespace, PLURAL, resource_version="2", timeout_seconds=5):
                pytest.fail("a watch from a compacted revision delivered an event")
        assert info.value.status == 410


def compact_etcd(control_plane: ControlPlane, revision: int) -> None:
    """Compact etcd's history up to ``revision`` through its JSON gateway."""
    body = json.dumps({"revision": str(revision), "physical": True}).encode()
    request = urllib.request.Request(f"{control_plane.etcd_url}/v3/kv/compaction", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


class TestSelectors:
    def test_label_and_field_selectors_filter_on_the_server(self, objects, namespace):
        for name, tier in (("red", "front"), ("green", "back"), ("blue", "front")):
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                    make_widget(name, labels={"tier": tier}))
        by_label = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                         label_selector="tier=front")
        assert sorted(i["metadata"]["name"] for i in by_label["items"]) == ["blue", "red"]
        by_name = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL,
                                                     field_selector=f"metadata.name=green,metadata.namespace={namespace}")
        assert [i["metadata"]["name"] for i in by_name["items"]] == ["green"]
        by_namespace = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL,
                                                          field_selector=f"metadata.namespace={namespace}")
        assert len(by_namespace["items"]) == 3


class TestAuthorization:
    def test_a_service_account_is_refused_until_a_role_binding_grants_it(self, control_plane, api, namespace):
        core = client.CoreV1Api(api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
        token_request = core.create_namespaced_service_account_token(
            "robot", namespace, {"spec": {"audiences": [], "expirationSeconds": 3600}})
        token = token_request.status.token
        assert base64.urlsafe_b64decode(token.split(".")[1] + "==")  # a real signed JWT
        with control_plane.token_client(token) as robot_api:
            robot = client.CoreV1Api(robot_api)
            with pytest.raises(ApiException) as info:
                robot.list_namespaced_config_map(namespace)
            assert info.value.status == 403
            rbac = client.RbacAuthorizationV1Api(api)
            rbac.create_namespaced_role(namespace, {
                "metadata": {"name": "read-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            })
            rbac.create_namespaced_role_binding(namespace, {
                "metadata": {"name": "robot-reads"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
            })
            deadline = time.monotonic() + 10
            while True:  # the authorizer's informer sees the binding within a moment
                try:
                    robot.list_namespaced_config_map(namespace)
                    break
                except ApiException as exc:
                    if exc.status != 403 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            with pytest.raises(ApiException) as info:
                robot.list_namespaced_secret(namespace)
            assert info.value.status == 403


class TestLeases:
    def test_a_lease_can_be_created_and_updated_with_optimistic_concurrency(self, api, namespace):
        leases = client.CoordinationV1Api(api)
        identity = f"candidate-{uuid.uuid4().hex[:6]}"
        created = leases.create_namespaced_lease(namespace, {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": 15},
        })
        created.spec.holder_identity = "successor"
        created.spec.lease_transitions = 1
        updated = leases.replace_namespaced_lease("leader", namespace, created)
        assert updated.spec.holder_identity == "successor"
        assert updated.metadata.resource_version != created.metadata.resource_version
        created.spec.holder_identity = "late"
        with pytest.raises(ApiException) as info:
            leases.replace_namespaced_lease("leader", namespace, created)
        assert info.value.status == 409


class TestVersion:
    def test_the_api_server_reports_the_pinned_release(self, control_plane):
        version = json.loads(control_plane.get_raw("/version"))
        assert version["gitVersion"].startswith("v1.")
        assert version["major"] == "1"


class TestControllerManager:
    def test_an_owned_config_map_is_garbage_collected_after_its_owner_is_deleted(self, api, namespace):
        core = client.CoreV1Api(api)
        owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})
        core.delete_namespaced_config_map("owner", namespace)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_config_map("owned", namespace)
            except ApiException as exc:
                assert exc.status == 404
                return
            time.sleep(0.2)
        pytest.fail("the owned ConfigMap was not garbage-collected within 60 s")

    def test_a_deleted_namespace_with_content_finishes_terminating(self, api):
        core = client.CoreV1Api(api)
        name = f"doomed-{uuid.uuid4().hex[:8]}"
        core.create_namespace({"metadata": {"name": name}})
        core.create_namespaced_config_map(name, {"metadata": {"name": "content"}})
        core.delete_namespace(name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                phase = core.read_namespace(name).status.phase
            except ApiException as exc:
                assert exc.status == 404
                return
            assert phase == "Terminating"
            time.sleep(0.2)
        pytest.fail(f"namespace {name} was still terminating after 60 s")

    def test_a_statefulset_gets_pods_0_to_n_minus_1_and_scaling_down_deletes_the_highest_ordinals(self, api,
                                                                                                  namespace):
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        labels = {"app": "numbered"}
        # Parallel: with OrderedReady the controller waits for each pod to be Ready, and nothing runs them here.
        created = apps.create_namespaced_stateful_set(namespace, {
            "metadata": {"name": "numbered"},
            "spec": {"replicas": 3, "serviceName": "numbered", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "example.invalid/main:1"}]}}}})

        def pods() -> dict[str, client.V1Pod]:
            return {pod.metadata.name: pod for pod in core.list_namespaced_pod(namespace, label_selector="app=numbered")
                    .items if pod.metadata.deletion_timestamp is None}

        deadline = time.monotonic() + 60
        while set(pods()) != {"numbered-0", "numbered-1", "numbered-2"}:
            assert time.monotonic() < deadline, f"the StatefulSet's pods after 60 s: {sorted(pods())}"
            time.sleep(0.2)
        first = pods()
        for pod in first.values():
            (owner,) = pod.metadata.owner_references
            assert (owner.kind, owner.uid, owner.controller) == ("StatefulSet", created.metadata.uid, True)
        apps.patch_namespaced_stateful_set_scale("numbered", namespace, {"spec": {"replicas": 1}})
        deadline = time.monotonic() + 60
        while set(pods()) != {"numbered-0"}:
            assert time.monotonic() < deadline, f"the StatefulSet's pods 60 s after scaling to 1: {sorted(pods())}"
            time.sleep(0.2)
        assert pods()["numbered-0"].metadata.uid == first["numbered-0"].metadata.uid  # kept, not replaced
