"""Faults the lab injects while load runs, each a flag, each with its time to recover.

Where it sits: ``loadtest.runner`` parses ``--fault NAME[:ARG]`` into :class:`FaultSpec` and schedules
them across the load phase; each injection appends a :class:`FaultEvent` (start, end, what) to the run.
A fault that could not be injected (no worker to kill, the leader not one of the lab's pods, a Redis
or API server that is not the lab's own, toxiproxy off, an exception) is still an event, with
``injected=False``: it has no recovery time, and ``loadtest.slo`` breaks the ``recovery_s`` gate on it
(a run must not pass a fault it never suffered).
Recovery time, computed after the run by :func:`recovery_times`: the longest any change made before the
fault ended, or in the 5 s after, waited past the fault's end (or past its own making, if later) to
converge (``None``: some never did). "Ended" is when the fault was removed (a SIGSTOP counts from the
stop: I5 wants the paused worker's keys handed out again without waiting for it). ``worst_latency_s`` is
the longest change -> status latency of the changes made from 1 s before the fault until 5 s after it.
Two faults are measured their own way:

- ``invalid-burst`` ends when its invalid objects are created; it then creates valid "canary" objects
  (``after-invalid-<n>``, a tenth as many, at least one), so its recovery always includes valid keys made
  right after the burst: how long the invalid keys, failing and backing off, held valid ones back.
- ``throttle`` never ends (the API server runs throttled from the start): its recovery is the time from
  its start (the start of the load phase; in ``burst``, the first create) until every change made from
  then on converged, i.e. the time to absorb the load under 429s (in ``steady`` and ``churn`` it
  includes the load's D seconds). ``worst_latency_s`` covers the same changes.

Names (ARG in brackets, defaults shown):
  kill-worker[:10]      SIGKILL a random worker process every ARG seconds
  stop-worker           SIGSTOP a random worker past its claim TTL (5 s in the lab) + 3 s, then SIGCONT
  kill-leader           SIGKILL the pod holding the Lease (manager and workers); restart it after 1 s
  redis-restart         restart redis-server keeping its data (SAVE first)
  redis-lose-data       restart redis-server with its data lost
  apiserver-restart     stop kube-apiserver, wait 2 s, start it again (etcd keeps the data)
  invalid-burst[:50]    create ARG objects that can never reconcile (their keys must back off), then
                        ARG/10 valid canaries whose convergence is the recovery
  api-latency[:200]     toxiproxy: ARG ms on every answer of the API server, for 10 s
  redis-latency[:50]    toxiproxy: ARG ms on every answer of Redis, for 10 s
  api-reset / redis-reset   toxiproxy: reset connections (reset_peer) for 5 s
  api-down / redis-down     toxiproxy: refuse connections for 5 s
  throttle              the API server runs with --max-requests-inflight=1 and
                        --max-mutating-requests-inflight=1 for the whole run (429s under load)
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtest.convergence import Change
    from loadtest.runner import Run

__all__ = ["FAULTS", "WHOLE_RUN_FAULTS", "FaultEvent", "FaultSpec", "parse_fault", "recovery_times"]

TOXIPROXY_FAULTS = ("api-latency", "redis-latency", "api-reset", "redis-reset", "api-down", "redis-down")
AFFECTED_AFTER_S = 5.0
THROTTLE_FLAGS = ["--max-requests-inflight=1", "--max-mutating-requests-inflight=1"]
WHOLE_RUN_FAULTS = ("throttle",)  # in force from their start to the end of the run


@dataclass(frozen=True)
class FaultSpec:
    name: str
    arg: float | None = None


@dataclass
class FaultEvent:
    name: str
    start: float
    end: float
    detail: str = ""
    recovery_s: float | None = None
    reset: bool = False  # Redis lost its data (and the failure counts the backoff uses)
    extra: dict[str, Any] = field(default_factory=dict)
    injected: bool = True  # False: the fault could not be injected (``detail`` says why)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worker(run: Run, rng: random.Random) -> tuple[Any, int] | None:
    choices = [(pod, pid) for pod in run.pods for pid in pod.workers()]
    return rng.choice(choices) if choices else None


def kill_worker(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    found = _worker(run, rng)
    now = time.time()
    if found is None:
        return FaultEvent(spec.name, now, now, "no worker to kill", injected=False)
    pod, pid = found
    os.kill(pid, signal.SIGKILL)
    return FaultEvent(spec.name, now, now, f"SIGKILL worker {pid} of {pod.name}")


def stop_worker(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:

    found = _worker(run, rng)
    now = time.time()
    if found is None:
        return FaultEvent(spec.name, now, now, "no worker to stop", injected=False)
    pod, pid = found
    os.kill(pid, signal.SIGSTOP)
    hold = run.claim_ttl + 3.0
    time.sleep(hold)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
    return FaultEvent(spec.name, now, now, f"SIGSTOP worker {pid} of {pod.name} for {hold:.0f}s",
                      extra={"resumed": time.time()})


def kill_leader(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    holder = run.leader()
    pod = next((p for p in run.pods if p.name == holder), None)
    now = time.time()
    if pod is None:
        return FaultEvent(spec.name, now, now, f"leader {holder!r} is not one of the lab's pods", injected=False)
    pod.kill()
    time.sleep(1.0)
    pod.start()
    return FaultEvent(spec.name, now, now, f"SIGKILL pod {pod.name} (the leader), restarted after 1s")


def redis_restart(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    redis = run.lab.redis
    now = time.time()
    if redis is None:
        return FaultEvent(spec.name, now, now, "skipped: Redis is not the lab's own (--redis-url)", injected=False)
    lose = spec.name == "redis-lose-data"
    if not lose:
        run.redis_client.save()
    redis.stop()
    dump = redis.workdir / "dump.rdb"
    if lose:
        dump.unlink(missing_ok=True)
    redis.start()
    return FaultEvent(spec.name, now, time.time(), "data lost" if lose else "data kept (SAVE, restart)",
                      reset=lose)


def apiserver_restart(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    plane = run.lab.plane
    now = time.time()
    if plane is None:
        return FaultEvent(spec.name, now, now, "skipped: the API server is not the lab's own (--kubeconfig)",
                          injected=False)
    plane.stop_apiserver()
    time.sleep(2.0)
    plane.start_apiserver()
    return FaultEvent(spec.name, now, time.time(), "kube-apiserver stopped 2s, then started")


def invalid_burst(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    count = int(spec.arg or 50)
    canaries = max(1, count // 10)
    now = time.time()
    run.driver.create_many([f"invalid-{i:04d}" for i in range(count)], invalid=True)
    end = time.time()
    run.driver.create_many([f"after-invalid-{i:04d}" for i in range(canaries)])
    return FaultEvent(spec.name, now, end, f"{count} objects that never reconcile, then {canaries} valid ones",
                      extra={"canaries": canaries})


def toxic(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    proxy_of = {"api": "apiserver", "redis": "redis"}
    target, _, kind = spec.name.partition("-")
    proxy = run.lab.toxiproxy
    now = time.time()
    if proxy is None:
        return FaultEvent(spec.name, now, now, "skipped: toxiproxy is off", injected=False)
    name = proxy_of[target]
    if kind == "latency":
        ms = int(spec.arg or (200 if target == "api" else 50))
        toxic_name = proxy.add_toxic(name, "latency", latency=ms, jitter=ms // 4)
        time.sleep(10.0)
        proxy.remove_toxic(name, toxic_name)
        detail = f"{ms} ms latency on {name} for 10s"
    elif kind == "reset":
        toxic_name = proxy.add_toxic(name, "reset_peer", timeout=100)
        time.sleep(5.0)
        proxy.remove_toxic(name, toxic_name)
        detail = f"connections to {name} reset for 5s"
    else:
        proxy.set_enabled(name, False)
        time.sleep(5.0)
        proxy.set_enabled(name, True)
        detail = f"{name} unreachable for 5s"
    return FaultEvent(spec.name, now, time.time(), detail)


def throttle(run: Run, spec: FaultSpec, rng: random.Random) -> FaultEvent:
    now = time.time()
    return FaultEvent(spec.name, now, now, "API server started with " + " ".join(THROTTLE_FLAGS))


FAULTS: dict[str, Callable[[Run, FaultSpec, random.Random], FaultEvent]] = {
    "kill-worker": kill_worker, "stop-worker": stop_worker, "kill-leader": kill_leader,
    "redis-restart": redis_restart, "redis-lose-data": redis_restart, "apiserver-restart": apiserver_restart,
    "invalid-burst": invalid_burst, "throttle": throttle, **dict.fromkeys(TOXIPROXY_FAULTS, toxic),
}


def parse_fault(text: str) -> FaultSpec:
    name, _, arg = text.partition(":")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
    return FaultSpec(name, float(arg) if arg else None)


def recovery_times(events: list[FaultEvent], changes: list[Change], ignore: set[str]) -> None:
    """Fill in ``recovery_s`` and ``worst_latency_s`` of each injected event from the changes' convergence
    times (a fault that was not injected keeps ``None``: there is nothing it could have recovered from)."""
    for event in events:
        if not event.injected:
            event.recovery_s = None
            continue
        valid = [c for c in changes if not c.deleted and c.key not in ignore]
        whole_run = event.name in WHOLE_RUN_FAULTS  # still in force: every change since its start, from it
        if whole_run:
            affected = during = [c for c in valid if c.at >= event.start]
        else:
            affected = [c for c in valid if c.at <= event.end + AFFECTED_AFTER_S]
            during = [c for c in affected if c.at >= event.start - 1.0]
        event.extra["worst_latency_s"] = (round(max(c.latency for c in during if c.latency is not None), 2)
                                          if any(c.latency is not None for c in during) else None)
        if any(c.converged_at is None for c in affected):
            event.recovery_s = None
            continue
        waits = [c.converged_at - (event.start if whole_run else max(c.at, event.end))
                 for c in affected if c.converged_at is not None]
        event.recovery_s = round(max([0.0, *waits]), 2)
