"""One lab run: environment up, operator pods started, load and faults driven, everything measured.

Where it sits: ``loadtest.cli`` builds a :class:`Run` from the command line and calls a scenario
(``steady``, ``burst``, ``churn`` and ``stress`` from ``loadtest.scenarios``; ``scale`` from
``loadtest.cli``, which starts a fresh set of pods per configuration);
``results()`` gathers the measurements, the checker's verdict and the faults for ``loadtest.report``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from loadtest import workload
from loadtest.checker import Final
from loadtest.convergence import Convergence
from loadtest.environment import Lab, LabOptions, OperatorPod
from loadtest.faults import FAULTS, THROTTLE_FLAGS, TOXIPROXY_FAULTS, FaultEvent, FaultSpec
from loadtest.load import Driver
from loadtest.sampling import Sampler, parse_metrics
from shard_operator.client import Client, install_crd
from shard_operator.kube import load_api_client
from shard_operator.source import Event, Informer, Resource

__all__ = ["Run", "RunOptions"]

LEASES = Resource("coordination.k8s.io", "v1", "leases")


@dataclass
class RunOptions:
    scenario: str = "steady"
    objects: int = 100
    rate: float = 10.0
    duration: float = 30.0
    workers: int = 2
    threads: int = 1
    qps: float = 0.0  # the sample operator's global work-queue rate limit (--qps); 0: none
    pods: int = 1
    work_s: float = 0.005
    faults: list[FaultSpec] = field(default_factory=list)
    operator_cmd: str | None = None
    crd: Path | None = None
    converged_jsonpath: str = workload.CONVERGED_JSONPATH
    converged_value: str | None = None
    lease_name: str | None = None  # the leader's Lease (kill-leader); None: the sample workload's
    kubeconfig: str | None = None
    redis_url: str | None = None
    converge_timeout: float = 180.0
    out: Path = Path("loadtest/results")
    seed: int = 1


def _crd_resource(crd: dict[str, Any]) -> tuple[Resource, dict[str, Any]]:
    spec = crd["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("storage"))
    resource = Resource(spec["group"], version, spec["names"]["plural"], namespaced=spec.get("scope") != "Cluster")
    return resource, crd


class Run:
    """A lab run; use as a context manager (it stops everything it started)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.dir = options.out / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        names = {f.name for f in options.faults}
        self.lab = Lab(LabOptions(kubeconfig=options.kubeconfig, redis_url=options.redis_url,
                                  toxiproxy=bool(names & set(TOXIPROXY_FAULTS)),
                                  apiserver_flags=THROTTLE_FLAGS if "throttle" in names else [],
                                  workdir=self.dir / "lab"))
        self.record_sink = f"file://{(self.dir / 'records.jsonl').resolve()}"
        self.claim_ttl = 5.0
        self.pods: list[OperatorPod] = []
        self.events: list[FaultEvent] = []
        self.phases: list[dict[str, Any]] = []
        self.phase = "starting"
        self.started = time.time()
        self.rng = random.Random(options.seed)

    # -- set-up and tear-down ---------------------------------------------------------------

    def __enter__(self) -> Run:
        self.lab.__enter__()
        try:
            self._setup()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _setup(self) -> None:
        o = self.options
        self.api = load_api_client(self.lab.kubeconfig)
        if o.crd:
            self.resource, crd = _crd_resource(yaml.safe_load(o.crd.read_text()))
            manifest_kind = crd["spec"]["names"]["kind"]
        else:
            self.resource, crd, manifest_kind = workload.RESOURCE, workload.CRD, workload.KIND
        install_crd(self.api, crd)
        self.client = Client(self.api, field_manager="loadtest")
        if "throttle" in {f.name for f in o.faults}:
            self.lab.use_service_account(self.client)
        self.namespace = f"lt-{uuid.uuid4().hex[:6]}"
        self.client.request("create", Resource("", "v1", "namespaces"), "/api/v1/namespaces",
                            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        self.convergence = Convergence(o.converged_jsonpath, o.converged_value)
        self.watch = Informer(self.resource, self._on_event, api_client=self.api, namespaces=self.namespace)
        self.watch.start()
        self.watch.wait_for_sync(60)
        api_version = f"{self.resource.group}/{self.resource.version}"

        def manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
            return {"apiVersion": api_version, "kind": manifest_kind,
                    "metadata": {"name": name, "namespace": namespace}, "spec": spec}

        self.driver = Driver(self.client, self.resource, self.namespace, self.convergence, manifest)
        self.redis_client = redis.Redis.from_url(self.lab.redis_url, socket_timeout=5)
        self.start_pods(o.pods, o.workers)
        self.sampler = Sampler(self.pods, self.redis_client, apiserver=self.apiserver_requests)
        self.sampler.count_apiserver_requests()
        self.sampler.start()

    def start_pods(self, count: int, workers: int, prefix: str = "lab") -> None:
        o = self.options
        for index in range(count):
            if o.operator_cmd:
                pod = self.lab.blackbox_pod(index, o.operator_cmd, namespace=self.namespace, metrics_port=None)
            else:
                pod = self.lab.sample_pod(index, namespace=self.namespace, workers=workers, threads=o.threads,
                                          record=self.record_sink, extra_env={"LOADTEST_WORK_S": str(o.work_s),
                                                                         "SHARD_OPERATOR_QPS": str(o.qps)},
                                          prefix=prefix)
            self.pods.append(pod.start())
        for pod in self.pods:
            pod.wait_ready()

    def stop_pods(self) -> None:
        for pod in self.pods:
            pod.stop()
        self.pods.clear()

    def __exit__(self, *exc: object) -> None:
        for stop in (lambda: self.sampler.stop(), self.stop_pods, lambda: self.watch.stop(),
                     lambda: self.driver.close(), lambda: self.api.close()):
            with contextlib.suppress(Exception):  # tear-down goes on past a part that never started
                stop()
        self.lab.__exit__(None, None, None)

    def _on_event(self, event: Event) -> None:
        self.convergence.observed(event.key, event.new)

    # -- helpers the scenarios and faults use ---------------------------------------------------

    def leader(self) -> str | None:
        """The identity holding the leader's Lease in the run's namespace (``--lease-name``; by default
        the sample workload's ``loadobjects-leader``, and none for a black box); None if not found."""
        name = self.options.lease_name or (None if self.options.operator_cmd else f"{workload.operator.name}-leader")
        if name is None:
            return None
        try:
            lease = self.client.get(LEASES, name, self.namespace)
        except Exception:
            return None
        return (lease.get("spec") or {}).get("holderIdentity")

    def apiserver_requests(self) -> dict[str, float]:
        """apiserver_request_total for the run's resource, by verb (and subresource), and every 429 answered."""
        try:
            if self.lab.plane is not None:
                text = self.lab.plane.get_raw("/metrics").decode()
            else:
                headers: dict[str, str] = {}
                self.api.update_params_for_auth(headers, [], ["BearerToken"], "/metrics", "GET", None)
                response = self.api.call_api("GET", self.api.configuration.host + "/metrics", header_params=headers)
                text = response.read().decode()
        except Exception:
            return {}
        counts: dict[str, float] = {}
        for (name, labels), value in parse_metrics(text).items():
            if name == "apiserver_request_total" and 'code="429"' in labels:
                counts["429 (any resource)"] = counts.get("429 (any resource)", 0.0) + value
            if name == "apiserver_request_total" and f'resource="{self.resource.plural}"' in labels:
                verb = labels.split('verb="', 1)[1].split('"', 1)[0]
                sub = labels.split('subresource="', 1)[1].split('"', 1)[0] if 'subresource="' in labels else ""
                key = f"{verb}/{sub}" if sub else verb
                counts[key] = counts.get(key, 0.0) + value
        return counts

    def set_phase(self, name: str) -> None:
        now = time.time()
        if self.phases:
            self.phases[-1]["end"] = now
        self.phases.append({"name": name, "start": now, "end": None})
        self.phase = name

    def wait_converged(self, timeout: float | None = None) -> float | None:
        """Seconds until every change so far converged (invalid objects aside); None on timeout."""
        started = time.time()
        deadline = started + (timeout or self.options.converge_timeout)
        while time.time() < deadline:
            if self.convergence.outstanding(ignore=self.driver.invalid) == 0:
                return round(time.time() - started, 2)
            time.sleep(0.1)
        return None

    def wait_gone(self, timeout: float = 120.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.convergence.finals:
                return True
            time.sleep(0.2)
        return False

    # -- faults ------------------------------------------------------------------------------

    def fault_thread(self, window: float) -> threading.Thread:
        """Injects the run's faults across the next ``window`` seconds (repeating ones every ARG s)."""
        specs = [f for f in self.options.faults if f.name != "throttle"]
        stop = threading.Event()

        def inject(spec: FaultSpec) -> None:
            try:
                event = FAULTS[spec.name](self, spec, self.rng)
            except Exception as exc:
                now = time.time()
                event = FaultEvent(spec.name, now, now, f"injection failed: {exc!r}", injected=False)
            self.events.append(event)

        def schedule() -> None:
            t0 = time.time()
            once = [s for s in specs if s.name != "kill-worker"]
            repeating = [s for s in specs if s.name == "kill-worker"]
            plan = [(t0 + window * (i + 1) / (len(once) + 1), s) for i, s in enumerate(once)]
            for spec in repeating:
                every = spec.arg or 10.0
                plan += [(t0 + every * k, spec) for k in range(1, int(window / every) + 1)]
            for at, spec in sorted(plan, key=lambda p: p[0]):
                while time.time() < at and not stop.is_set():
                    time.sleep(0.05)
                if stop.is_set():
                    return
                inject(spec)

        thread = threading.Thread(target=schedule, name="faults", daemon=True)
        thread.stop = stop  # type: ignore[attr-defined]
        if "throttle" in {f.name for f in self.options.faults}:
            inject(FaultSpec("throttle"))
        thread.start()
        return thread

    # -- results -----------------------------------------------------------------------------

    def finals(self) -> dict[str, Final]:
        """The converged state of every object that exists now, from a LIST (not the watch)."""
        self.driver.requests["list"] += 1
        listed = self.client.request("list", self.resource, self.resource.path(self.namespace))
        found = {}
        for obj in listed.get("items", []):
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            found[key] = Final(int(obj["metadata"].get("generation") or 0), self.convergence.converged_generation(obj))
        return found

    def results(self, finals: dict[str, Final], extra: dict[str, Any]) -> dict[str, Any]:
        """Stop sampling and gather every figure of the run (``loadtest.results``)."""
        from loadtest.results import gather

        return gather(self, finals, extra)
