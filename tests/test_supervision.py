"""The supervised process pool: restart backoff, exits reported once, drain then kill, parent-death check."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest

from shard_operator.clock import ManualClock
from shard_operator.supervision import Child, Exit, ProcessPool, RestartPolicy
from tests.waiting import eventually


@dataclass
class Slot:
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0


def test_quick_deaths_back_off_doubling_up_to_the_cap():
    policy, slot = RestartPolicy(backoff=1.0, max_backoff=5.0, stable_after=60.0), Slot()
    delays = []
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        slot.started_at = now - 0.5
        delays.append(policy.schedule(slot, now))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert slot.next_start == 5.0 + 5.0


def test_a_death_after_a_stable_run_restarts_at_once_and_resets_the_count():
    policy, slot = RestartPolicy(backoff=1.0, stable_after=10.0), Slot(restarts=4)
    assert policy.schedule(slot, now=100.0) == 0.0 and slot.restarts == 0
    slot.started_at = 100.0
    assert policy.schedule(slot, now=101.0) == 1.0


def test_a_backoff_above_the_cap_is_used_as_it_is_and_nonpositive_ones_are_refused():
    assert RestartPolicy(backoff=60.0, max_backoff=30.0).schedule(Slot(), now=1.0) == 60.0
    with pytest.raises(ValueError):
        RestartPolicy(backoff=0)


# -- the process pool ------------------------------------------------------------------------------


def _exit_with(stop: threading.Event, code: int) -> None:
    os._exit(code)


def _run_until_stopped(stop: threading.Event, path: str) -> None:
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    stop.wait(60)


def _ignore_sigterm(stop: threading.Event) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, not yet reaped by whoever adopted it, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_that_exits_is_reported_with_its_exit_code_and_restarted_after_its_backoff():
    clock = ManualClock(100.0)
    reported: list[Exit] = []
    pool = ProcessPool(1, lambda i: Child(f"c{i}", _exit_with, (3,)), on_exit=reported.extend, clock=clock,
                       policy=RestartPolicy(backoff=1.0, stable_after=5.0))
    pool.start()
    try:
        eventually(lambda: pool.supervise(), what="the exit to be found")
        assert [(e.slot, e.child.name, e.exitcode, e.restart_in) for e in reported] == [(0, "c0", 3, 1.0)]
        assert pool.supervise() == [] and len(reported) == 1  # reported once, not restarted before its backoff
        clock.step(1.0)
        pool.supervise()  # restarted now; it exits again at once
        eventually(lambda: pool.supervise(), what="the second exit")
        assert [e.restart_in for e in reported] == [1.0, 2.0]
    finally:
        pool.stop(timeout=1)


def test_stop_drains_with_sigterm_and_kills_a_child_that_ignores_it(tmp_path):
    pids = tmp_path / "pids"
    make = [Child("polite", _run_until_stopped, (str(pids),)), Child("deaf", _ignore_sigterm)]
    pool = ProcessPool(2, lambda i: make[i])
    pool.start()
    eventually(lambda: pids.exists() and set(pool.pids) == {"polite", "deaf"}, what="both children running")
    time.sleep(0.2)  # the deaf child has installed its handler
    started = time.monotonic()
    exits = pool.stop(timeout=1.0)
    assert time.monotonic() - started < 4
    assert {e.child.name: e.exitcode for e in exits} == {"polite": 0, "deaf": -signal.SIGKILL}
    assert all(e.restart_in is None for e in exits) and pool.pids == {}


def _parent_with_a_pool(path: str) -> None:
    pool = ProcessPool(1, lambda i: Child("orphan", _run_until_stopped, (path,)), parent_check_interval=0.1)
    pool.start()
    time.sleep(60)


def test_a_child_whose_parent_was_sigkilled_stops_within_a_second(tmp_path):
    import multiprocess

    pids = tmp_path / "pids"
    parent = multiprocess.get_context("fork").Process(target=_parent_with_a_pool, args=(str(pids),))
    parent.start()
    child = int(eventually(lambda: pids.exists() and pids.read_text().strip(), what="the child to start"))
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join(5)
    eventually(lambda: not _alive(child), timeout=2.0, what="the orphaned child to exit")


# -- the reconcile-worker pool: a killed worker's keys come back in seconds (I5) ----------------------

CONTROLLER = "supervised"
#: Read by the reconciles in the forked worker processes (set before a pool starts).
_TARGET: dict[str, str] = {}


def _recording_reconcile(request, ctx) -> None:
    """Records each start; the first reconcile of ``ns/slow`` hangs (it is SIGKILLed there)."""
    import redis

    log = redis.Redis.from_url(_TARGET["url"])
    log.rpush(f"starts:{request.key}", f"{os.getpid()}|{time.time():.6f}")
    if request.key == "ns/slow" and log.llen(f"starts:{request.key}") == 1:
        time.sleep(60)
    log.close()


@pytest.fixture
def ring_keeper(redis_url):
    """What the leader does: publish the live shards and re-queue expired claims, every 0.1 s."""
    import redis

    from shard_operator.keys import Keys
    from shard_operator.queue import WorkQueue
    from shard_operator.sharding import Assigner

    client, keys = redis.Redis.from_url(redis_url), Keys.for_controller(CONTROLLER)
    assigner, queue, halt = Assigner(client, keys, member_ttl=2.0), WorkQueue(client, keys), threading.Event()

    def keep() -> None:
        while not halt.wait(0.1):
            assigner.rebalance()
            queue.reap_expired()

    thread = threading.Thread(target=keep, daemon=True)
    thread.start()
    yield client
    halt.set()
    thread.join(2)
    client.close()


@pytest.mark.redis
def test_a_killed_workers_key_is_reconciled_again_within_3_seconds_with_the_default_claim_ttl(redis_url, ring_keeper):
    from shard_operator.keys import Keys
    from shard_operator.queue import WorkQueue
    from shard_operator.worker.pool import WorkerPool, WorkerSpec

    client, keys = ring_keeper, Keys.for_controller(CONTROLLER)
    spec = WorkerSpec(controller=CONTROLLER, shard="s0", redis_url=redis_url, heartbeat_interval=0.2,
                      get_timeout=0.2, bucket=None)
    assert spec.claim_ttl == 30.0
    _TARGET["url"] = redis_url
    pool = WorkerPool([spec], _recording_reconcile)
    pool.start()
    halt = threading.Event()
    supervisor = threading.Thread(target=lambda: [pool.supervise() for _ in iter(lambda: halt.wait(0.25), True)],
                                  daemon=True)
    supervisor.start()
    try:
        eventually(lambda: client.lrange(keys.ring, 0, -1) == [b"s0"], what="the worker to join the ring")
        WorkQueue(client, keys).add("ns/slow")
        first = eventually(lambda: client.lindex("starts:ns/slow", 0), what="the first reconcile to start")
        pid = int(first.decode().split("|")[0])
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        second = eventually(lambda: client.lindex("starts:ns/slow", 1), timeout=10, what="a second reconcile")
        pid2, started = second.decode().split("|")
        assert int(pid2) != pid and float(started) - killed < 3.0
    finally:
        halt.set()
        supervisor.join(2)
        pool.stop(timeout=5)


@pytest.mark.redis
def test_a_shard_in_restart_backoff_leaves_the_ring_so_a_live_shard_takes_its_keys(redis_url):
    import redis

    from shard_operator.keys import Keys
    from shard_operator.queue import WorkQueue
    from shard_operator.sharding import Assigner, Membership
    from shard_operator.worker.pool import WorkerPool, WorkerSpec

    client, keys = redis.Redis.from_url(redis_url), Keys.for_controller("backoff")
    specs = [WorkerSpec(controller="backoff", shard=shard, redis_url=redis_url, bucket=None) for shard in ("s0", "s1")]
    pool = WorkerPool(specs, _recording_reconcile)  # not started: the test reports exits as supervise() would
    assigner, queue = Assigner(client, keys), WorkQueue(client, keys)

    def members() -> set[str]:
        return {member.decode() for member in client.zrange(keys.members, 0, -1)}

    try:
        for shard in ("s0", "s1"):
            Membership(client, keys, shard).heartbeat()
        assigner.rebalance()
        queue.add_many(f"ns/k{i}" for i in range(20))
        # restarted at once (after a stable run): s0 stays a member, its replacement takes its keys back
        pool._exited([Exit(0, pool._child(0), pid=4_000_001, exitcode=-9, restart_in=0.0)])
        assert members() == {"s0", "s1"}
        # restarted only after a backoff: s0 leaves now, so the next rebalance gives all its keys to s1
        pool._exited([Exit(0, pool._child(0), pid=4_000_002, exitcode=-9, restart_in=2.0)])
        assert members() == {"s1"}
        assigner.rebalance()
        taken = set()
        while (item := queue.get("s1", "live-worker", timeout=0.5)) is not None:
            taken.add(item.key)
            queue.done(item)
        assert taken == {f"ns/k{i}" for i in range(20)}
    finally:
        pool.stop(timeout=1)
        client.close()


_log_clients: dict[int, object] = {}


def _five_ms_reconcile(request, ctx) -> None:
    import redis

    log = _log_clients.get(os.getpid())
    if log is None:
        log = _log_clients[os.getpid()] = redis.Redis.from_url(_TARGET["url"])
    time.sleep(0.005)
    log.sadd(f"done:{_TARGET['controller']}", request.key)  # type: ignore[attr-defined]


def _convergence_seconds(redis_url: str, controller: str, *, kill_every: float | None) -> tuple[float, int]:
    """Seconds until 500 keys have each been reconciled once by 2 workers (default claim TTL), with a
    SIGKILL of a random worker 0.5 s after the adds and then every ``kill_every`` seconds; and the kills."""
    import random

    import redis

    from shard_operator.keys import Keys
    from shard_operator.queue import TokenBucket, WorkQueue
    from shard_operator.sharding import Assigner
    from shard_operator.worker.pool import WorkerPool, WorkerSpec

    client, keys = redis.Redis.from_url(redis_url), Keys.for_controller(controller)
    assigner, queue, halt = Assigner(client, keys, member_ttl=2.0), WorkQueue(client, keys), threading.Event()
    specs = [WorkerSpec(controller=controller, shard=f"w{i}", redis_url=redis_url, heartbeat_interval=0.2,
                        get_timeout=0.2, bucket=TokenBucket(qps=100.0, burst=50)) for i in range(2)]
    _TARGET.update(url=redis_url, controller=controller)
    pool = WorkerPool(specs, _five_ms_reconcile)
    kills = 0

    def lead() -> None:  # the leader's coordinator and the manager's supervision loop
        while not halt.wait(0.1):
            assigner.rebalance()
            queue.reap_expired()
            pool.supervise()

    def killer() -> None:
        nonlocal kills
        rng, wait = random.Random(7), 0.5
        while not halt.wait(wait) and kill_every is not None:
            pids = sorted(pool.pids.values())
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
            wait = kill_every

    pool.start()
    leader = threading.Thread(target=lead, daemon=True)
    leader.start()
    try:
        eventually(lambda: len(client.lrange(keys.ring, 0, -1)) == 2, timeout=10, what="both workers in the ring")
        started = time.monotonic()
        threading.Thread(target=killer, daemon=True).start()
        queue.add_many(f"ns/obj-{i}" for i in range(500))
        eventually(lambda: client.scard(f"done:{controller}") == 500, timeout=120, interval=0.01,
                   what="every key reconciled")
        return time.monotonic() - started, kills
    finally:
        halt.set()
        leader.join(2)
        pool.stop(timeout=10)
        client.close()


@pytest.mark.redis
@pytest.mark.slow
def test_under_a_kill_every_3_seconds_convergence_takes_at_most_one_and_a_half_times_as_long(redis_url):
    calm, _ = _convergence_seconds(redis_url, "calm", kill_every=None)
    stormy, kills = _convergence_seconds(redis_url, "stormy", kill_every=3.0)
    print(f"convergence of 500 keys: {calm:.2f}s without kills, {stormy:.2f}s with {kills} kill(s)")
    assert kills >= 1
    assert stormy <= 1.5 * calm, f"{stormy:.2f}s with kills vs {calm:.2f}s without"
