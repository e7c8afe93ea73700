"""Supervised child processes: the one process pool behind the reconcile workers and the job workers.

Where it sits: the manager runs two pools, :class:`~shard_operator.worker.pool.WorkerPool` (one
process per shard) and :class:`~shard_operator.jobs.pool.JobWorkerPool` (rq workers). Both are thin
users of :class:`ProcessPool`: they say what each child runs and what to do when children exit;
the pool forks, watches, restarts with a :class:`RestartPolicy` and stops them.

What every child gets from the pool, before its ``main`` runs:

- it is forked with ``multiprocess``'s fork context (the parent's modules, no pickling of ``main``);
- SIGINT is ignored (Ctrl-C reaches the whole process group; the parent decides);
- SIGTERM means "finish in-flight work and exit": it sets the ``stop`` event ``main`` receives (a
  ``main`` that installs its own SIGTERM handler, like rq's worker, takes that meaning over);
- a parent-death check: a thread polls ``getppid()`` and, once the parent is gone (the manager was
  SIGKILLed), sends SIGTERM to its own process, so an orphan drains and exits as on a stop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import multiprocess

from shard_operator import metrics

__all__ = ["Child", "Exit", "ProcessPool", "RestartPolicy", "Restartable"]

log = logging.getLogger(__name__)


class Restartable(Protocol):
    """The bookkeeping fields a pool keeps per child."""

    started_at: float
    restarts: int
    next_start: float


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff doubles from ``backoff`` up to ``max_backoff`` (or ``backoff`` if larger); a child that
    ran ``stable_after`` seconds restarts at once and its count starts over.

    The defaults protect against a crash loop (a child that dies within seconds of every start waits
    1, 2, 4 … 30 s) without starving a shard whose worker is merely killed now and then: five seconds
    of healthy running are enough to earn an immediate restart.
    """

    backoff: float = 1.0
    max_backoff: float = 30.0
    stable_after: float = 5.0

    def __post_init__(self) -> None:
        if self.backoff <= 0 or self.stable_after <= 0:
            raise ValueError("restart backoff and stable_after must be > 0")

    def schedule(self, slot: Restartable, now: float) -> float:
        """Record that ``slot``'s child died at ``now``; set and return the delay before its restart."""
        slot.restarts = 0 if now - slot.started_at >= self.stable_after else slot.restarts + 1
        cap = max(self.max_backoff, self.backoff)
        delay = 0.0 if slot.restarts == 0 else min(self.backoff * 2 ** (slot.restarts - 1), cap)
        slot.next_start = now + delay
        return delay


@dataclass(frozen=True)
class Child:
    """What one child process runs: ``main(stop, *args)``, where ``stop`` is a ``threading.Event``
    set on SIGTERM or when the parent died; ``main`` returns once it has drained."""

    name: str
    main: Callable[..., None]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Exit:
    """A child found exited: its slot, what it ran, its pid and exit code (negative: killed by that
    signal), and the delay before its restart (None: the pool is stopping, no restart)."""

    slot: int
    child: Child
    pid: int
    exitcode: int | None
    restart_in: float | None


@dataclass
class _Slot:
    index: int
    child: Child | None = None
    process: Any = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    dead: bool = False  # exited and reported; waiting for next_start


class ProcessPool:
    """``size`` supervised child processes; ``make_child(index)`` says what slot ``index`` runs at each
    (re)start.

    - :meth:`start` forks every child (call it before the parent starts threads of its own).
    - :meth:`supervise` (call it periodically, or run :meth:`run_supervisor` in a thread) finds the
      children that exited, schedules their restart with ``policy``, reports them all in one call of
      ``on_exit`` (its errors are logged, never raised), then starts those whose backoff has passed.
    - :meth:`stop` sends SIGTERM to every child, waits up to ``timeout`` for them to drain, kills the
      rest, and reports them to ``on_exit`` with ``restart_in=None``.

    The pool marks every exited child's metrics files dead (prometheus multiprocess mode).
    """

    def __init__(self, size: int, make_child: Callable[[int], Child], *, policy: RestartPolicy | None = None,
                 on_exit: Callable[[list[Exit]], None] | None = None, parent_check_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1 or parent_check_interval <= 0:
            raise ValueError("a process pool needs size >= 1 and parent_check_interval > 0")
        self.make_child, self.on_exit = make_child, on_exit
        self.policy = policy or RestartPolicy()
        self.parent_check_interval, self.clock = parent_check_interval, clock
        self._slots = [_Slot(i) for i in range(size)]
        self._ctx = multiprocess.get_context("fork")
        self._stopping = threading.Event()

    @property
    def pids(self) -> dict[str, int]:
        """Child name → pid of the live children."""
        return {slot.child.name: slot.process.pid for slot in self._slots
                if slot.child is not None and slot.process is not None and slot.process.is_alive()}

    def start(self) -> None:
        """Start every child; a pool that was stopped can be started again."""
        self._stopping.clear()
        for slot in self._slots:
            slot.dead = False
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.child = self.make_child(slot.index)
        slot.process = self._ctx.Process(target=_bootstrap, name=slot.child.name, daemon=False,
                                         args=(slot.child, os.getpid(), self.parent_check_interval))
        slot.process.start()
        metrics.track_process(slot.process.pid, slot.child.name)
        slot.started_at = self.clock()

    def supervise(self) -> list[Exit]:
        """Report the children that exited since the last call and restart those due; returns the exits."""
        if self._stopping.is_set():
            return []
        now, exits = self.clock(), []
        for slot in self._slots:
            if slot.dead or slot.process is None or slot.process.is_alive() or slot.child is None:
                continue
            slot.dead = True
            delay = self.policy.schedule(slot, now)
            metrics.mark_process_dead(slot.process.pid)
            exits.append(Exit(slot.index, slot.child, slot.process.pid, slot.process.exitcode, delay))
            log.warning("%s (pid %d) exited with %s; restart in %.1fs", slot.child.name, slot.process.pid,
                        slot.process.exitcode, delay)
        self._report(exits)
        for slot in self._slots:
            if slot.dead and self.clock() >= slot.next_start and not self._stopping.is_set():
                slot.dead = False
                self._start(slot)
        return exits

    def run_supervisor(self, interval: float = 0.5) -> None:
        """Call :meth:`supervise` every ``interval`` seconds until :meth:`stop`."""
        while not self._stopping.wait(interval):
            self.supervise()

    def stop(self, timeout: float = 30.0) -> list[Exit]:
        """SIGTERM every child, kill those still running after ``timeout`` seconds; returns the exits."""
        self._stopping.set()
        live = [slot for slot in self._slots if slot.process is not None and not slot.dead]
        for slot in live:
            if slot.process.is_alive():
                slot.process.terminate()
        deadline = time.monotonic() + timeout
        exits = []
        for slot in live:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.warning("%s did not stop in %.0fs; killing it", slot.process.name, timeout)
                slot.process.kill()
                slot.process.join(5)
            metrics.mark_process_dead(slot.process.pid)
            slot.dead = True
            assert slot.child is not None
            exits.append(Exit(slot.index, slot.child, slot.process.pid, slot.process.exitcode, None))
        self._report(exits)
        return exits

    def _report(self, exits: list[Exit]) -> None:
        if exits and self.on_exit is not None:
            try:
                self.on_exit(exits)
            except Exception:  # supervision goes on; what on_exit failed to do has a slower backstop
                log.exception("handling the exit of %s failed", ", ".join(e.child.name for e in exits))


def _bootstrap(child: Child, parent: int, check_interval: float) -> None:
    """The first code of every child process: signals, the parent-death check, then ``child.main``."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_parent() -> None:
        while not stop.wait(check_interval):
            if os.getppid() != parent:
                log.warning("%s: the parent process %d died; stopping", child.name, parent)
                os.kill(os.getpid(), signal.SIGTERM)  # whoever handles SIGTERM now drains and exits
                return

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    child.main(stop, *child.args)
