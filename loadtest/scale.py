"""Scale benchmark of the leader (issue 12, items 3 and 4): memory per object and ingest capacity.

Drives the real leader code path (``Informer`` → ``ApiListWatch`` decode → ``EventDispatcher`` →
``CacheWriter`` + ``WorkQueue``) with a synthetic API server: :class:`StubListWatch` answers the raw
list and watch requests with JSON bytes generated on the fly, so the stub itself holds no objects and
the leader's RSS is the leader's. Every scenario runs in a fresh child process.

- ``sync``: list N Pods (~4 KB with managedFields) or small CRs into a real ``redis-server``; reports
  the time to list and sync, the leader's RSS (now and peak), a worker's RSS (a process reading from
  the cache), Redis memory per object against the objects' JSON size, and Redis's slow log (> 20 ms).
- ``ingest``: after a list, a watch stream of MODIFIED events, first as fast as the leader takes
  them (its capacity), then paced at fixed rates; reports events/s, the worst lag between an event's
  arrival and its cache write and queue add, and Redis round trips per event.

``python -m loadtest.scale [--counts 10000 100000] [--quick]`` prints JSON and saves it under
``loadtest/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shard_operator import codec

RESULTS = Path(__file__).parent / "results"


# -- synthetic objects ------------------------------------------------------------------------------

def pod(i: int, rv: int) -> dict[str, Any]:
    """A realistic Pod of about 4 KB of JSON, a third of it managedFields."""
    name = f"web-{i // 3:06d}-{i % 3}"
    labels = {"app": "web", "pod-template-hash": "7d9f8c6b5", "tier": f"t{i % 7}"}
    container = {
        "name": "web", "image": "registry.example.com/team/web:1.27.3",
        "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
        "env": [{"name": f"SETTING_{n}", "value": f"value-{n}-{i % 13}"} for n in range(8)],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                          "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10},
    }
    return {
        "metadata": {
            "name": name, "namespace": f"ns-{i % 50}", "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(rv), "creationTimestamp": "2026-11-28T04:00:00Z",
            "generateName": f"web-{i // 3:06d}-", "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T10:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"web-{i // 3:06d}",
                                 "uid": f"11111111-0000-4000-8000-{i // 3:012d}", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-11-28T04:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {f"f:{k}": {} for k in labels},
                                             "f:ownerReferences": {"k:{\"uid\":\"x\"}": {}}},
                              "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                                  f"f:{field}": {} for field in container}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-28T04:00:05Z",
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {f"f:{c}": {} for c in (
                     "conditions", "containerStatuses", "hostIP", "hostIPs", "phase", "podIP", "podIPs",
                     "startTime", "qosClass")}}}],
        },
        "spec": {
            "containers": [container], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "nodeName": f"node-{i % 200:03d}",
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": f"10.{i % 250}.{i // 250 % 250}.{i % 200}",
            "startTime": "2026-11-28T04:00:01Z", "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2026-11-28T04:00:05Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "started": True,
                                   "image": "registry.example.com/team/web:1.27.3",
                                   "imageID": "registry.example.com/team/web@sha256:" + "ab" * 32,
                                   "containerID": "containerd://" + f"{i:064x}",
                                   "state": {"running": {"startedAt": "2026-11-28T04:00:04Z"}},
                                   "lastState": {}}],
        },
    }


def widget(i: int, rv: int, generation: int = 1) -> dict[str, Any]:
    """A small custom resource (about 600 bytes of JSON)."""
    return {
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": f"w-{i:06d}", "namespace": f"ns-{i % 50}", "uid": f"22222222-0000-4000-8000-{i:012d}",
                     "resourceVersion": str(rv), "generation": generation,
                     "creationTimestamp": "2026-11-28T04:00:00Z", "labels": {"app": "widgets"},
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "example.com/v1",
                                        "time": "2026-11-28T04:00:00Z", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:spec": {"f:size": {}, "f:color": {}}}}]},
        "spec": {"size": i % 10, "color": "blue"},
        "status": {"observedGeneration": generation, "phase": "Ready"},
    }


# -- the synthetic API server -------------------------------------------------------------------------

class _Response:
    def __init__(self, data: bytes = b"", chunks: Iterator[bytes] | None = None) -> None:
        self.data, self._chunks = data, chunks

    def stream(self, amt: int, decode_content: bool = True) -> Iterator[bytes]:
        yield from self._chunks or iter(())

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


def stub_list_watch(kind: str, count: int, stream: Iterator[bytes] | None = None) -> Any:
    """An ``ApiListWatch`` whose HTTP calls are answered here: ``count`` objects listed in pages,
    then ``stream`` (newline-separated watch events, as bytes chunks) for the first watch."""
    from shard_operator.source import ApiListWatch, Resource

    make = pod if kind == "pods" else widget
    resource = Resource("", "v1", "pods") if kind == "pods" else Resource("example.com", "v1", "widgets")

    class StubListWatch(ApiListWatch):
        watches = 0
        seconds = 0.0  # spent making list pages: the API server's share, reported apart from the leader's

        def _get(self, namespace: str | None, query: list[tuple[str, str]], read_timeout: float) -> Any:
            started = time.perf_counter()
            try:
                return self._answer(dict(query), read_timeout)
            finally:
                StubListWatch.seconds += time.perf_counter() - started

        def _answer(self, params: dict[str, str], read_timeout: float) -> Any:
            if params.get("watch") == "true":
                StubListWatch.watches += 1
                if StubListWatch.watches == 1 and stream is not None:
                    return _Response(chunks=stream)
                time.sleep(min(read_timeout, 0.5))
                return _Response(chunks=iter(()))
            start, limit = int(params.get("continue") or 0), int(params["limit"])
            end = min(count, start + limit)
            items = [make(i, 1000 + i) for i in range(start, end)]
            body = {"kind": "PodList" if kind == "pods" else "WidgetList",
                    "apiVersion": "v1" if kind == "pods" else "example.com/v1",
                    "metadata": {"resourceVersion": str(1000 + count),
                                 **({"continue": str(end)} if end < count else {})},
                    "items": items}
            return _Response(codec.dumps(body))  # as compact as the API server's, and as quick to make

    return resource, StubListWatch(None, resource)  # type: ignore[arg-type]


# -- measurements -----------------------------------------------------------------------------------

def rss_mb(field: str = "VmRSS", pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class RoundTrips:
    """Counts the Redis round trips this process makes (one per command sent, one per pipeline)."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def leader(redis_url: str, kind: str, count: int, transform: bool,
           stream: bool = False) -> tuple[Any, Any, Any, Any]:
    import redis

    from shard_operator.cache import CacheWriter
    from shard_operator.dispatching import EventDispatcher
    from shard_operator.handler import For
    from shard_operator.keys import Keys
    from shard_operator.queue import WorkQueue
    from shard_operator.source import drop_managed_fields

    client = redis.Redis.from_url(redis_url)
    cache = CacheWriter(client)  # its replace reads the objects once, so a streamed relist can feed it
    queue = WorkQueue(client, Keys.for_controller("scale"))
    return client, cache, queue, (EventDispatcher, For, drop_managed_fields if transform else None)


def run_sync(redis_url: str, kind: str, count: int, transform: bool, stream: bool) -> dict[str, Any]:
    import gc

    import redis

    from shard_operator.source import Informer

    admin = redis.Redis.from_url(redis_url)
    admin.flushall()
    admin.config_set("slowlog-log-slower-than", 20000)
    admin.slowlog_reset()
    base_memory = int(admin.info("memory")["used_memory"])
    _client, cache, queue, (dispatcher_type, for_type, transform_fn) = leader(redis_url, kind, count, transform,
                                                                                stream)
    resource, lw = stub_list_watch(kind, count)
    dispatcher = dispatcher_type(resource.name, [for_type(resource)], cache=cache, queue=queue, controller="scale")
    gc.collect()
    rss_before = rss_mb()
    started = time.monotonic()
    hook = cache.list_hook_for(resource.name)
    lists = {"on_list_streamed": hook, "handler_many": dispatcher.dispatch_many} if stream else {"on_list": hook}
    informer = Informer(resource, dispatcher, list_watch=lw, transform=transform_fn, **lists).start()
    assert informer.wait_for_sync(600), "no sync"
    synced = time.monotonic() - started
    stub_s = type(lw).seconds
    gc.collect()
    rss_after = rss_mb()
    redis_bytes = int(admin.info("memory")["used_memory"]) - base_memory
    json_bytes = 0
    for i in range(count):
        obj = (pod if kind == "pods" else widget)(i, 1000 + i)
        if transform_fn is not None:
            obj = transform_fn(obj)
        json_bytes += len(json.dumps(obj, separators=(",", ":")))
    slow = admin.slowlog_get(128)
    worker = subprocess.run([sys.executable, "-m", "loadtest.scale", "--worker", redis_url, resource.name,
                             str(count)], capture_output=True, text=True, check=True)
    informer.stop()
    return {
        "scenario": "sync", "kind": kind, "objects": count, "transform": transform, "streamed_list": stream,
        "list_and_sync_s": round(synced, 2),
        # the synthetic API server runs in the leader's process: its share (making the pages) and the rest
        "api_stub_s": round(stub_s, 2), "leader_s": round(synced - stub_s, 2),
        "leader_rss_mb": round(rss_after, 1), "leader_peak_rss_mb": round(rss_mb("VmHWM"), 1),
        "leader_rss_growth_mb": round(rss_after - rss_before, 1),
        "leader_bytes_per_object": round((rss_after - rss_before) * 1024 * 1024 / count),
        "worker_rss_mb": json.loads(worker.stdout)["worker_rss_mb"],
        "object_json_bytes": round(json_bytes / count), "redis_bytes_per_object": round(redis_bytes / count),
        "redis_over_json": round(redis_bytes / json_bytes, 2),
        "redis_commands_over_20ms": len(slow),
        "redis_slowest_ms": round(max((entry["duration"] for entry in slow), default=0) / 1000, 1),
    }


def run_worker(redis_url: str, kind: str, count: int) -> None:
    """A worker process's view: read 2,000 objects from the cache, report RSS."""
    import random

    import redis

    from shard_operator.cache import CacheReader

    reader = CacheReader(redis.Redis.from_url(redis_url))
    keys = reader.keys(kind)
    for key in random.sample(keys, min(2000, len(keys))):
        assert reader.get(kind, key) is not None
    print(json.dumps({"worker_rss_mb": round(rss_mb(), 1)}))


def event_lines(count: int, events: int, rate: float | None, sent: list[float]) -> Iterator[bytes]:
    """MODIFIED Widget events (a new generation each, so the default predicate passes), in chunks of
    up to 50 lines, paced at ``rate`` per second (None: as fast as they are read)."""
    chunks = []  # encoded before the clock starts: the leader's process pays only for reading them
    for first in range(0, events, 50):
        lines = [json.dumps({"type": "MODIFIED", "object": widget(n % count, 1000 + count + 1 + n,
                                                                  generation=2 + n // count)})
                 for n in range(first, min(events, first + 50))]
        chunks.append((first, lines))
    started = time.monotonic()
    for first, lines in chunks:
        if rate is None:
            sent.extend([time.monotonic()] * len(lines))
        else:  # the lag counts from when the event was due, so a slow reader shows as lag
            delay = started + first / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.extend(started + n / rate for n in range(first, first + len(lines)))
        yield ("\n".join(lines) + "\n").encode()


def run_ingest(redis_url: str, count: int, rate: float | None, events: int, batch: bool) -> dict[str, Any]:
    import redis

    from shard_operator.source import Informer

    redis.Redis.from_url(redis_url).flushall()
    _client, cache, queue, (dispatcher_type, for_type, transform_fn) = leader(redis_url, "crs", count, True)
    sent: list[float] = []
    resource, lw = stub_list_watch("crs", count, event_lines(count, events, rate, sent))
    dispatcher = dispatcher_type(resource.name, [for_type(resource)], cache=cache, queue=queue, controller="scale")
    done: list[float] = []

    def handle(event: Any) -> None:
        dispatcher(event)
        if event.new is not None and int(event.new["metadata"]["resourceVersion"]) > 1000 + count:
            done.append(time.monotonic())

    def handle_many(events: list[Any]) -> None:
        dispatcher.dispatch_many(events)
        now = time.monotonic()
        done.extend(now for event in events if event.new is not None
                    and int(event.new["metadata"]["resourceVersion"]) > 1000 + count)

    trips = RoundTrips()
    batching = {"handler_many": handle_many} if batch else {}
    informer = Informer(resource, handle, list_watch=lw, transform=transform_fn,
                        on_list=cache.list_hook_for(resource.name), **batching).start()
    assert informer.wait_for_sync(600)
    trips.count = 0
    deadline = time.monotonic() + 120
    while len(done) < events and time.monotonic() < deadline:
        time.sleep(0.05)
    informer.stop()
    lags = sorted(max(0.0, d - s) for d, s in zip(done, sent, strict=False))
    elapsed = done[-1] - sent[0] if done else float("inf")
    return {
        "scenario": "ingest", "objects": count, "batched": batch, "offered_rate": rate, "events": len(done),
        "events_per_s": round(len(done) / elapsed), "lag_p50_ms": round(lags[len(lags) // 2] * 1000, 1),
        "lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 1), "lag_max_ms": round(lags[-1] * 1000, 1),
        "current_within_1s": lags[-1] < 1.0, "redis_round_trips_per_event": round(trips.count / max(1, len(done)), 2),
    }


# -- the driver -----------------------------------------------------------------------------------------

def child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "loadtest.scale", *args], capture_output=True, text=True)
    if out.returncode:
        return {"args": args, "error": out.stderr[-2000:]}
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--only", choices=["sync", "ingest"], default=None)
    parser.add_argument("--label", default="", help="saved in the JSON (e.g. before/after)")
    parser.add_argument("--scenarios", nargs="+", default=["pods:1:stream", "pods:0:stream", "crs:1:stream"],
                        help="kind:transform[:stream] for the sync runs (transform 1 drops managedFields; "
                             "stream lists through on_list_streamed)")
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--ingest-modes", nargs="+", choices=["single", "batch"], default=["single", "batch"],
                        help="single: one event per handler call (main's path); batch: handler_many")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--sync", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--ingest", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    if args.sync:
        url, kind, count, transform = args.sync
        transform, _, stream = transform.partition(":")
        print(json.dumps(run_sync(url, kind, int(count), transform == "1", stream == "stream")))
        return
    if args.ingest:
        url, count, rate, events = args.ingest
        rate, _, batch = rate.partition(":")
        print(json.dumps(run_ingest(url, int(count), None if rate == "max" else float(rate), int(events),
                                    batch == "batch")))
        return

    from shard_operator.testing.redis_server import RedisServer

    server = None if args.redis_url else RedisServer().start()
    url = args.redis_url or server.url  # type: ignore[union-attr]
    results: list[dict[str, Any]] = []
    load = os.getloadavg()
    try:
        if args.only in (None, "sync"):
            for count in args.counts:
                for scenario in args.scenarios:
                    kind, transform = scenario.split(":", 1)
                    results.append(child(["--sync", url, kind, str(count), transform]))
        if args.only in (None, "ingest"):
            for mode in args.ingest_modes:
                suffix = ":batch" if mode == "batch" else ""
                results.append(child(["--ingest", url, "1000", "max" + suffix, "20000"]))
                for rate in args.rates:
                    results.append(child(["--ingest", url, "1000", f"{rate}{suffix}", str(int(rate * 5))]))
    finally:
        if server is not None:
            server.stop()
    report = {"label": args.label, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                               "loadavg_start": [round(x, 2) for x in load],
                                               "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
              "results": results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"scale-{args.label or 'run'}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
