"""Server-side sharded list and watch (Kubernetes >= 1.36, ``ShardedListAndWatch``) against the real API
server: a hash range selects exactly the objects whose FNV-1a-64 uid hash lies in it, computed here in
Python; on a server without the feature the range is refused with a clear error, or filtered here."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Literal

import pytest
from kubernetes import client

from shard_operator.client import install_crd, open_crd
from shard_operator.errors import ShardingUnsupportedError
from shard_operator.source import ApiListWatch, Backoff, Event, EventType, HashRange, Informer, Resource, uid_hash
from shard_operator.testing import ControlPlane
from tests.waiting import eventually

pytestmark = pytest.mark.controlplane

CONFIGMAPS = Resource("", "v1", "configmaps")
GROUP, VERSION, PLURAL, KIND = "shards.shard-operator.dev", "v1", "gadgets", "Gadget"
GADGETS = Resource(GROUP, VERSION, PLURAL)
LOWER, UPPER = HashRange.split(2)
NOTHING = HashRange(0, 1)  # a range no real uid hashes into (a chance of 2**-64 per object)


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with control_plane.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def gadgets(api: client.ApiClient) -> None:
    install_crd(api, open_crd(GADGETS, KIND))


@pytest.fixture
def sharded(control_plane: ControlPlane) -> None:
    if not control_plane.sharded_list_and_watch:
        pytest.skip(f"Kubernetes {control_plane.kubernetes_version} has no sharded list and watch "
                    "(run with --kubernetes-version 1.37)")


@pytest.fixture
def unsharded(control_plane: ControlPlane) -> None:
    if control_plane.sharded_list_and_watch:
        pytest.skip(f"Kubernetes {control_plane.kubernetes_version} honours shard selectors")


def create_configmaps(api: client.ApiClient, namespace: str, count: int, prefix: str) -> dict[str, str]:
    """Create ``count`` ConfigMaps; returns name -> uid (the server assigns the uid)."""
    core = client.CoreV1Api(api)
    made = {}
    for index in range(count):
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"{prefix}-{index}"), data={"i": str(index)})
        made[f"{prefix}-{index}"] = core.create_namespaced_config_map(namespace, body).metadata.uid
    return made


def in_range(uids: dict[str, str], hash_range: HashRange) -> set[str]:
    """The names whose uid hash (computed here) lies in ``hash_range``."""
    return {name for name, uid in uids.items() if hash_range.start <= uid_hash(uid) < hash_range.end}


def list_names(list_watch: ApiListWatch, namespace: str, page_size: int = 7) -> set[str]:
    names: set[str] = set()
    token = None
    while True:
        page = list_watch.list(namespace, limit=page_size, continue_token=token)
        names.update(item["metadata"]["name"] for item in page.items)
        token = page.continue_token
        if not token:
            return names


class RangeWatcher:
    """An informer on one range of the namespace's ConfigMaps that records the names per event type."""

    def __init__(self, list_watch: ApiListWatch, namespace: str) -> None:
        self.list_watch = list_watch
        self.seen: dict[EventType, set[str]] = {kind: set() for kind in EventType}
        self._lock = threading.Lock()
        self.informer = Informer(CONFIGMAPS, self._handle, list_watch=list_watch, namespaces=namespace,
                                 backoff=Backoff(initial=0.1, maximum=0.5), watch_timeout=30)

    def _handle(self, event: Event) -> None:
        with self._lock:
            self.seen[event.type].add(event.key.split("/", 1)[1])

    def names(self, kind: EventType) -> set[str]:
        with self._lock:
            return set(self.seen[kind])


@pytest.fixture
def range_watchers(api: client.ApiClient) -> Iterator[list[RangeWatcher]]:
    started: list[RangeWatcher] = []
    yield started
    for watcher in started:
        watcher.informer.stop()


def start_watchers(api: client.ApiClient, namespace: str, started: list[RangeWatcher],
                   unsharded: Literal["error", "filter"]) -> list[RangeWatcher]:
    for hash_range in (LOWER, UPPER):
        watcher = RangeWatcher(ApiListWatch(api, CONFIGMAPS, shard_range=hash_range, unsharded=unsharded),
                               namespace)
        started.append(watcher)
        watcher.informer.start()
    for watcher in started:
        assert watcher.informer.wait_for_sync(30)
    return started


@pytest.mark.usefixtures("sharded")
class TestShardedServer:
    def test_custom_resources_are_filtered_by_the_range_without_an_echo_so_each_object_is_checked(
            self, api, namespace, gadgets):
        uids = {}
        objects = client.CustomObjectsApi(api)
        for index in range(20):
            made = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": f"g-{index}"}, "spec": {}})
            uids[made["metadata"]["name"]] = made["metadata"]["uid"]
        list_watch = ApiListWatch(api, GADGETS, shard_range=LOWER)
        assert list_names(list_watch, namespace) == in_range(uids, LOWER)
        # No error although unsharded="error": every object answered was in the range, so the server
        # filtered; but Kubernetes 1.37.2 echoes no shardInfo for custom resources.
        assert list_watch.server_sharded is None

    def test_a_ranged_list_is_echoed_in_shard_info_and_holds_exactly_the_objects_hashed_into_it(
            self, api, namespace):
        uids = create_configmaps(api, namespace, 30, "listed")
        for hash_range in (LOWER, UPPER, HashRange(1 << 62, 3 << 62)):
            list_watch = ApiListWatch(api, CONFIGMAPS, shard_range=hash_range)
            assert list_names(list_watch, namespace) == in_range(uids, hash_range)
            assert list_watch.server_sharded is True

    def test_two_complementary_ranges_partition_the_objects_in_list_and_watch(self, api, namespace,
                                                                              range_watchers):
        listed = create_configmaps(api, namespace, 20, "before")
        lower, upper = start_watchers(api, namespace, range_watchers, unsharded="error")
        assert lower.list_watch.server_sharded and upper.list_watch.server_sharded
        assert lower.names(EventType.ADDED) == in_range(listed, LOWER)
        assert upper.names(EventType.ADDED) == in_range(listed, UPPER)
        assert in_range(listed, LOWER) and in_range(listed, UPPER)  # 20 uids: both halves hold some

        watched = create_configmaps(api, namespace, 20, "after")
        everything = {**listed, **watched}
        eventually(lambda: lower.names(EventType.ADDED) | upper.names(EventType.ADDED) == set(everything),
                   timeout=30)
        time.sleep(1.0)  # room for a stray event of the other range to arrive
        assert lower.names(EventType.ADDED) == in_range(everything, LOWER)
        assert upper.names(EventType.ADDED) == in_range(everything, UPPER)

        core = client.CoreV1Api(api)
        for name in everything:
            core.delete_namespaced_config_map(name, namespace)
        eventually(lambda: lower.names(EventType.DELETED) | upper.names(EventType.DELETED) == set(everything),
                   timeout=30)
        time.sleep(1.0)
        assert lower.names(EventType.DELETED) == in_range(everything, LOWER)
        assert upper.names(EventType.DELETED) == in_range(everything, UPPER)


@pytest.mark.usefixtures("unsharded")
class TestServerWithoutSharding:
    def test_a_ranged_list_fails_with_a_clear_error(self, api, namespace):
        create_configmaps(api, namespace, 3, "plain")
        list_watch = ApiListWatch(api, CONFIGMAPS, shard_range=NOTHING)
        expected = r"ignored shardSelector.*1\.36.*ShardedListAndWatch"
        with pytest.raises(ShardingUnsupportedError, match=expected) as info:
            list_watch.list(namespace, limit=10, continue_token=None)
        assert info.value.selector == NOTHING.selector

    def test_an_informer_on_a_range_never_syncs_and_logs_why(self, api, namespace, caplog):
        create_configmaps(api, namespace, 3, "plain")
        informer = Informer(CONFIGMAPS, lambda event: None, api_client=api, namespaces=namespace, shard_range=NOTHING,
                            backoff=Backoff(initial=0.1, maximum=0.5)).start()
        try:
            assert not informer.wait_for_sync(2)
            assert informer.list() == []
        finally:
            informer.stop()
        assert any("ShardingUnsupportedError" in record.getMessage() and "ShardedListAndWatch" in record.getMessage()
                   for record in caplog.records)

    def test_the_filter_fallback_partitions_the_objects_in_list_and_watch_on_the_client(
            self, api, namespace, range_watchers):
        listed = create_configmaps(api, namespace, 20, "before")
        lower, upper = start_watchers(api, namespace, range_watchers, unsharded="filter")
        assert lower.list_watch.server_sharded is False and upper.list_watch.server_sharded is False
        assert lower.names(EventType.ADDED) == in_range(listed, LOWER)
        assert upper.names(EventType.ADDED) == in_range(listed, UPPER)

        watched = create_configmaps(api, namespace, 20, "after")
        everything = {**listed, **watched}
        eventually(lambda: lower.names(EventType.ADDED) | upper.names(EventType.ADDED) == set(everything),
                   timeout=30)
        time.sleep(1.0)
        assert lower.names(EventType.ADDED) == in_range(everything, LOWER)
        assert upper.names(EventType.ADDED) == in_range(everything, UPPER)


def test_every_page_of_a_ranged_list_is_a_subset_of_the_range(api, namespace, control_plane):
    """Paging (continue tokens) keeps the range on both kinds of server."""
    uids = create_configmaps(api, namespace, 25, f"paged-{uuid.uuid4().hex[:4]}")
    list_watch = ApiListWatch(api, CONFIGMAPS, shard_range=UPPER, unsharded="filter")
    assert list_names(list_watch, namespace, page_size=3) == in_range(uids, UPPER)
    assert list_watch.server_sharded is control_plane.sharded_list_and_watch
