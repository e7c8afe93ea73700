"""The leader elector: campaign for a Lease, renew it while leading, hand it over on shutdown.

The manager (docs/design.md §2.10) runs one :class:`LeaderElector` per pod; its callbacks start the informers
when the pod becomes leader and stop them the moment it no longer may lead (docs/design.md §2.9). The rules are
client-go's ``leaderelection``; the Lease I/O is in :mod:`shard_operator.leaderelection.lease`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shard_operator.errors import ApiError, ConfigError, ConflictError, NotFoundError, TooManyRequestsError
from shard_operator.leaderelection.lease import LeaderElectionRecord, LeaseLock

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["JITTER_FACTOR", "LeaderElector"]

JITTER_FACTOR = 1.2  # a candidate waits retry_period * (1 + U[0, 1.2)) between attempts, as client-go
_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Elects one leader among the candidates that share ``namespace/name``, each with its own ``identity``.

    Contract (client-go semantics):

    - A candidate takes the Lease when it does not exist, when nobody holds it (released), when it
      holds it itself, or when it has expired: ``lease_duration`` seconds have passed on the
      candidate's own ``clock`` since it last saw the record change. Remote timestamps are never
      compared with the local clock. Every write carries the resourceVersion it read; losing a race
      (409) is a failed attempt. A take-over increments ``leaseTransitions``.
    - The leader renews every ``retry_period``. If it has not renewed within ``renew_deadline`` of
      its last successful renewal, or it sees another holder, it stops leading at once (before the
      others may consider the Lease expired, since ``lease_duration > renew_deadline``) and campaigns
      again.
    - A 429 (API priority and fairness, ``--max-requests-inflight``) is waited out as ``Retry-After``
      asks: a leader retries its renewal after ``Retry-After`` instead of ``retry_period``, never
      sleeping past its renew deadline (it tries once more before it), and a renewal refused by a 429
      writes on the version it already holds (no extra GET); a candidate waits at least
      ``Retry-After`` before its next attempt.
    - ``on_started_leading()`` / ``on_stopped_leading()`` run in the elector's thread, strictly
      alternating, and must return quickly (start or stop threads; do not run the work in them).
      ``on_stopped_leading`` always runs before the Lease is released. ``on_new_leader(identity)``
      runs whenever a different non-empty holder is observed (this candidate included).
      ``on_status(leading)`` runs with False at start and on every change (the
      ``leader_election_master_status`` gauge). A callback that raises is logged and ignored.
    - :meth:`stop` (or :meth:`release`) ends the campaign; by default a leader then hands the Lease
      over (empty holder, ``leaseDurationSeconds=1``) so a successor takes it at its next attempt.

    ``clock`` (monotonic seconds) and ``wall_clock`` (the time written into the Lease) are injectable
    for tests; the waits between attempts always use real time.
    """

    def __init__(self, api_client: ApiClient, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started_leading: Callable[[], Any] | None = None,
                 on_stopped_leading: Callable[[], Any] | None = None,
                 on_new_leader: Callable[[str], Any] | None = None,
                 on_status: Callable[[bool], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = _utcnow) -> None:
        _validate(namespace=namespace, name=name, identity=identity, lease_duration=lease_duration,
                  renew_deadline=renew_deadline, retry_period=retry_period)
        self.identity = identity
        self.lease_duration = float(lease_duration)
        self.renew_deadline = float(renew_deadline)
        self.retry_period = float(retry_period)
        self._lock = LeaseLock(api_client, namespace, name)
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._on_status = on_status
        self._clock = clock
        self._wall_clock = wall_clock
        self._step_lock = threading.Lock()
        self._observed = LeaderElectionRecord()
        self._observed_time = 0.0
        self._reported_leader = ""
        self._is_leader = False
        self._release_on_stop = True
        self._released = True
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_after: float | None = None  # of the last attempt's 429, if it got one

    # -- public API -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True between ``on_started_leading`` and ``on_stopped_leading``."""
        return self._is_leader

    @property
    def leader(self) -> str:
        """The holder last observed in the Lease ('' when none or not yet read)."""
        return self._observed.holder_identity

    def start(self) -> LeaderElector:
        """Campaign in a background daemon thread; an elector runs once."""
        if self._thread is not None:
            raise RuntimeError("a LeaderElector can be started only once")
        self._thread = threading.Thread(target=self._run, name=f"leader-elector-{self.identity}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None, *, release: bool = True) -> None:
        """Stop campaigning; a leader calls ``on_stopped_leading`` and then, if ``release``, hands over."""
        self._release_on_stop = release
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def release(self, timeout: float | None = None) -> bool:
        """Graceful shutdown: :meth:`stop` with hand-over. False if the hand-over write failed.

        Without a started thread (attempts made with :meth:`try_acquire_or_renew`) it writes the
        hand-over itself if this candidate holds the Lease.
        """
        self.stop(timeout, release=True)
        if self._thread is None:
            self._released = self._release()
        return self._released

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or renew the Lease; True if this candidate holds it afterwards.

        The background thread calls this; tests call it directly to step a fake clock.
        """
        with self._step_lock:
            self._retry_after = None
            try:
                acquired = self._try_acquire_or_renew(self._clock() + self.renew_deadline)
            except TooManyRequestsError as exc:
                self._retry_after = exc.retry_after
                _log.info("%s: lease %s/%s not acquired: throttled (Retry-After %s)", self.identity,
                          self._lock.namespace, self._lock.name, exc.retry_after)
                acquired = False
            except ApiError as exc:
                _log.info("%s: lease %s/%s not acquired: %s", self.identity, self._lock.namespace,
                          self._lock.name, exc)
                acquired = False
        self._report_new_leader()
        return acquired

    # -- one attempt ------------------------------------------------------------------

    def _try_acquire_or_renew(self, deadline: float) -> bool:
        now = self._wall_clock()
        desired = LeaderElectionRecord(self.identity, int(self.lease_duration), now, now, 0)
        holds = self._observed.holder_identity == self.identity
        if holds and self._lock.has_object and self._observed_valid():
            try:  # fast path: renew on the resourceVersion we wrote last
                self._write(self._kept(desired, self._observed), deadline)
                return True
            except ConflictError:
                pass  # someone else wrote it: read it and decide again
        try:
            current = self._lock.get(self._timeout(deadline))
        except NotFoundError:
            self._lock.create(desired, self._timeout(deadline))
            self._observe(desired)
            return True
        if current != self._observed:
            self._observe(current)
        if current.holder_identity and current.holder_identity != self.identity and self._observed_valid():
            return False
        if current.holder_identity == self.identity:
            desired = self._kept(desired, current)
        else:
            desired = LeaderElectionRecord(self.identity, desired.lease_duration_seconds, now, now,
                                           current.lease_transitions + 1)
        self._write(desired, deadline)
        return True

    @staticmethod
    def _kept(desired: LeaderElectionRecord, held: LeaderElectionRecord) -> LeaderElectionRecord:
        """A renewal keeps the acquire time and the transition count."""
        return LeaderElectionRecord(desired.holder_identity, desired.lease_duration_seconds,
                                    held.acquire_time or desired.acquire_time, desired.renew_time,
                                    held.lease_transitions)

    def _write(self, record: LeaderElectionRecord, deadline: float) -> None:
        self._lock.update(record, self._timeout(deadline))
        self._observe(record)

    def _observe(self, record: LeaderElectionRecord) -> None:
        self._observed = record
        self._observed_time = self._clock()

    def _observed_valid(self) -> bool:
        return self._observed_time + self._observed.lease_duration_seconds > self._clock()

    def _timeout(self, deadline: float) -> float:
        return min(self.renew_deadline, max(deadline - self._clock(), 0.05))

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        self._emit(self._on_status, False)
        while not self._stopping.is_set():
            start = self._clock()
            if self.try_acquire_or_renew():
                self._lead(start)
            else:
                wait = self.retry_period * (1 + random.uniform(0, JITTER_FACTOR))
                self._stopping.wait(max(wait, self._retry_after or 0.0))

    def _lead(self, renewed_at: float) -> None:
        """Lead until stopped or the Lease is lost; ``renewed_at`` is when the winning attempt began."""
        self._is_leader = True
        _log.info("%s: became leader of lease %s/%s", self.identity, self._lock.namespace, self._lock.name)
        self._emit(self._on_status, True)
        self._emit(self._on_started_leading)
        ok, retry_after = True, None
        while True:
            deadline = renewed_at + self.renew_deadline
            wait = self.retry_period if ok else self.retry_wait(deadline - self._clock(), retry_after)
            if self._stopping.wait(max(wait, 0.0)):
                self._stop_leading("stopping")
                if self._release_on_stop:
                    self._released = self._release()
                return
            start = self._clock()
            if start >= deadline:
                self._stop_leading(f"not renewed within {self.renew_deadline}s")
                return
            retry_after = None
            with self._step_lock:
                try:
                    ok = self._try_acquire_or_renew(deadline)
                except TooManyRequestsError as exc:
                    retry_after = exc.retry_after if exc.retry_after is not None else 1.0
                    _log.info("%s: renewing the lease was throttled; retrying in %.2gs", self.identity,
                              retry_after)
                    ok = False
                except ApiError as exc:
                    _log.warning("%s: renewing the lease failed: %s", self.identity, exc)
                    ok = False
            self._report_new_leader()
            if ok:
                renewed_at = start
            elif self._observed.holder_identity not in ("", self.identity):
                self._stop_leading(f"lease taken by {self._observed.holder_identity}")
                return

    def retry_wait(self, remaining: float, retry_after: float | None) -> float:
        """How long a leader waits before retrying a failed renewal, ``remaining`` seconds before its
        renew deadline: ``retry_after`` when the server asked for it, else ``retry_period``; but never
        so long that no try is left before the deadline (a last one at most 0.2 s before it)."""
        wanted = self.retry_period if retry_after is None else retry_after
        return max(0.0, min(wanted, max(remaining - 0.2, remaining / 2)))

    def _stop_leading(self, why: str) -> None:
        _log.warning("%s: stopped leading lease %s/%s: %s", self.identity, self._lock.namespace,
                     self._lock.name, why)
        self._is_leader = False
        self._emit(self._on_stopped_leading)
        self._emit(self._on_status, False)

    def _release(self) -> bool:
        """Hand the Lease over: empty holder, 1 s duration, transitions kept."""
        with self._step_lock:
            if self._observed.holder_identity != self.identity:
                return True
            now = self._wall_clock()
            record = LeaderElectionRecord("", 1, now, now, self._observed.lease_transitions)
            try:
                if not self._lock.has_object:
                    self._lock.get(self.renew_deadline)
                self._write(record, self._clock() + self.renew_deadline)
            except ApiError as exc:
                _log.warning("%s: releasing the lease failed: %s", self.identity, exc)
                return False
            return True

    def _report_new_leader(self) -> None:
        holder = self._observed.holder_identity
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            self._emit(self._on_new_leader, holder)

    def _emit(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            _log.exception("%s: leader election callback %r failed", self.identity, callback)


def _validate(*, namespace: str, name: str, identity: str, lease_duration: float, renew_deadline: float,
              retry_period: float) -> None:
    for field, value in (("namespace", namespace), ("name", name), ("identity", identity)):
        if not value:
            raise ConfigError(f"leader election {field} must not be empty")
    if lease_duration < 1 or lease_duration != int(lease_duration):
        raise ConfigError(f"lease_duration must be a whole number of seconds >= 1, got {lease_duration!r}")
    if renew_deadline <= 0 or retry_period <= 0:
        raise ConfigError("renew_deadline and retry_period must be greater than zero")
    if lease_duration <= renew_deadline:
        raise ConfigError(f"lease_duration ({lease_duration}s) must be greater than "
                          f"renew_deadline ({renew_deadline}s)")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise ConfigError(f"renew_deadline ({renew_deadline}s) must be greater than "
                          f"{JITTER_FACTOR} * retry_period ({retry_period}s)")
