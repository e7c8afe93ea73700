"""The base work queue: client-go's ``workqueue.Interface`` across processes and pods, in Redis.

Where it sits: handlers ``add`` keys (the leader's informers), worker processes ``get`` the keys of
their shard, reconcile, and call ``done``. :mod:`.delaying` and :mod:`.rate_limiting` add the
client-go layers above it; :class:`~shard_operator.sharding.Assigner` calls ``rebalance`` when the
ring changes. Each method is one Lua script of :mod:`.scripts`, one round trip; the scripts read
the time from Redis (:mod:`shard_operator.clock`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import redis

from shard_operator.clock import ManualClock, check_clock, script_time
from shard_operator.errors import ClaimLostError, ShutDownError
from shard_operator.keys import Keys, validate_shard_id
from shard_operator.queue import scripts
from shard_operator.queue.checks import check_count, check_seconds

__all__ = ["Item", "Rebalance", "TokenBucket", "WorkQueue"]


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """The global rate limit taken when ``get`` hands a key out, shared by every process and pod.

    ``qps`` tokens per second refill a bucket of ``burst`` tokens; ``get`` hands nothing out while
    the bucket is empty and its caller waits. ``qps=None`` or ``math.inf`` disables the bucket;
    any other rate must be finite and > 0, and ``burst`` an integer >= 1 (else ValueError).
    """

    qps: float | None = 10.0
    burst: int = 100

    def __post_init__(self) -> None:
        if self.qps is not None and self.qps != math.inf:
            check_seconds("TokenBucket qps", self.qps, upper=math.inf)  # a rate, but checked the same way
        check_count("TokenBucket burst", self.burst)

    @property
    def enabled(self) -> bool:
        return self.qps is not None and math.isfinite(self.qps)


@dataclass(slots=True)
class Item:
    """A claimed key: hand it back to ``done`` (or ``renew`` it) with the token it carries.

    ``enqueued_at``, ``claimed_at`` and ``deadline`` are Redis server times (queue latency =
    ``claimed_at - enqueued_at``; the claim expires at ``deadline`` unless renewed).
    ``local_deadline`` is the same deadline on this process's ``time.monotonic()``, counted from
    before the request that claimed or renewed the key, so it never falls after the real one: a
    worker compares it with its own monotonic clock to know whether it still holds the claim.
    """

    key: str
    token: str
    shard: str
    owner: str
    enqueued_at: float
    claimed_at: float
    deadline: float
    local_deadline: float = 0.0


class Rebalance(NamedTuple):
    """What one ``rebalance`` did: the ring's epoch after it and how many queued keys moved shard."""

    epoch: int
    moved: int
    changed: bool


class WorkQueue:
    """client-go's work queue in Redis: every transition atomic, every key handled one at a time.

    - ``add(key)``: no-op if the key is already dirty (waiting); else mark it dirty and, unless it
      is being processed, push it to the ready list of the shard the current ring assigns it.
    - ``get(shard, owner, timeout)``: take the next ready key of ``shard``; it moves from dirty to
      processing under a claim (``owner``, deadline = now + ``claim_ttl``). Returns None when
      nothing came within ``timeout`` seconds (0: do not wait; None: wait until shut down).
    - ``done(item)``: release the claim; if the key was added meanwhile it is pushed again, to its
      *current* shard. Raises :class:`ClaimLostError`, changing nothing, if the claim was lost.
    - ``renew(item)``: extend the claim (:class:`ClaimLostError` if lost).
    - ``reap_expired()``: re-queue keys whose claim deadline passed (run periodically, anywhere).
    - ``rebalance(member_ttl)``: publish the live shards as the ring and move queued keys whose
      shard changed, in chunks (the :class:`~shard_operator.sharding.Assigner` calls it).
    - ``release_owner(owner)``: queue again every key claimed by an owner whose process exited.

    No call runs a script over more than ``chunk`` keys (``add_many`` pipelines several calls).
    - ``shut_down()``: this instance hands out nothing more (``get`` raises :class:`ShutDownError`)
      and ignores adds, as client-go does; ``done`` keeps working. It does not affect other
      processes sharing the queue. ``shut_down_with_drain()`` also waits for this instance's
      handed-out items to be done.

    "now" is always the Redis server's ``TIME`` (``clock`` is for tests: a :class:`ManualClock`
    whose time the scripts use instead). An idle ``get`` blocks on its shard's wake-up list, which
    every push to an empty ready list fills (add, done, promotion, reaping, rebalancing), so a key
    is served at once; ``max_wait`` only bounds each block (for shut down, due delayed keys and the
    token bucket's refill). Numbers are checked on the way in (ValueError); Redis failures raise
    :class:`~shard_operator.errors.StorageError`.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, claim_ttl: float = 30.0,
                 bucket: TokenBucket | None = None, clock: ManualClock | None = None,
                 max_wait: float = 0.25, promote_limit: int = 100, chunk: int = 100,
                 slot_budget: int = 2048) -> None:
        self.claim_ttl = check_seconds("claim_ttl", claim_ttl)
        self.max_wait = check_seconds("max_wait", max_wait)
        self.promote_limit = check_count("promote_limit", promote_limit)
        self.chunk = check_count("chunk", chunk)
        self.slot_budget = check_count("slot_budget", slot_budget)
        self.client, self.keys, self.clock = client, keys, check_clock(clock)
        enabled = bucket is not None and bucket.enabled
        self._qps = repr(float(bucket.qps)) if enabled and bucket is not None and bucket.qps else "0"
        self._burst = str(bucket.burst) if bucket is not None else "1"
        self._prefix = keys.script_prefix
        self._route = [keys.dirty]
        with scripts.redis_errors():
            self._add = client.register_script(scripts.ADD)
            self._add_after = client.register_script(scripts.ADD_AFTER)
            self._get = client.register_script(scripts.GET)
            self._done = client.register_script(scripts.DONE)
            self._done_and_get = client.register_script(scripts.DONE_AND_GET)
            self._batch = client.register_script(scripts.BATCH)
            self._renew = client.register_script(scripts.RENEW)
            self._reap = client.register_script(scripts.REAP)
            self._len = client.register_script(scripts.LEN)
            self._rebalance = client.register_script(scripts.REBALANCE)
            self._rebalance_step = client.register_script(scripts.REBALANCE_STEP)
            self._slots_step = client.register_script(scripts.SLOTS_STEP)
            self._release_owner = client.register_script(scripts.RELEASE_OWNER)
        self._shutting_down = False
        self._outstanding: set[tuple[str, str]] = set()  # (key, token) of handed-out items
        self._drained = threading.Condition()

    def add(self, key: str) -> bool:
        """Mark ``key`` dirty and queue it; False if it was already dirty (or the queue is shut down)."""
        return self.add_many([key]) == 1

    def add_many(self, keys: Iterable[str]) -> int:
        """``add`` each key, ``chunk`` keys per script call, pipelined in one round trip; returns how
        many became dirty (``workqueue_adds_total``). Each chunk is atomic, the batch is not."""
        batch = list(keys)
        if self._shutting_down or not batch:
            return 0
        with scripts.redis_errors():
            if len(batch) <= self.chunk:
                return int(self._add(self._route, self._args(*batch)))
            pipe = self.client.pipeline(transaction=False)
            for start in range(0, len(batch), self.chunk):
                self._add(self._route, self._args(*batch[start:start + self.chunk]), client=pipe)
            return sum(int(n) for n in pipe.execute())

    def get(self, shard: str, owner: str, timeout: float | None = 0.0) -> Item | None:
        """Claim the next ready key of ``shard`` for ``owner``; see the class contract."""
        validate_shard_id(shard)
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._shutting_down:
                raise ShutDownError("the work queue is shut down")
            sent = time.monotonic()
            with scripts.redis_errors():
                reply = self._get(self._route, self._args(shard, owner, *self._take_args()))
            item = self._item(reply, shard, owner, sent)
            if item is not None:
                return item
            if not self._wait(shard, float(reply[5]), give_up):
                return None

    def done(self, item: Item) -> None:
        """Release ``item``'s claim; see the class contract."""
        self._release(item, ())

    def claim_batch(self, shard: str, owner: str, n: int, timeout: float | None = 0.0) -> list[Item]:
        """Claim up to ``n`` ready keys of ``shard`` for ``owner`` in one script call; [] when none came
        within ``timeout`` (as ``get``).

        Each key is claimed exactly as ``get`` claims one (I1-I4 hold per key as for ``get``): only a
        dirty key that is not being processed is handed out, to one claim (own token, deadline = now +
        ``claim_ttl``), after due delayed keys are promoted; a key found in another shard's list is
        moved there, not handed out; the token bucket gives at most as many keys as it has whole tokens
        (one per key, as ``get`` takes). Nothing about a key changes because it came in a batch: each
        item is renewed, released and reaped on its own, so a dead owner's batch is released by
        ``release_owner`` or reaped after its deadline like single claims.
        """
        check_count("n", n)
        return self._batch_and_claim([], [], (), shard, owner, n, timeout)[1]

    def done_batch(self, items: Sequence[Item]) -> list[bool]:
        """Release every item's claim in one script call (each as ``done``: a key added meanwhile is
        queued again to its current shard); returns per item whether its claim was still held (a lost
        claim changes nothing, and raises nothing here)."""
        return self._batch_and_claim(items, [False] * len(items), (), "", "", 0, 0)[0]

    def done_batch_and_claim(self, items: Sequence[Item], shard: str, owner: str, n: int,
                             timeout: float | None = 0.0) -> tuple[list[bool], list[Item]]:
        """``done_batch(items)`` then ``claim_batch(shard, owner, n, timeout)``, the first try in one trip."""
        return self._batch_and_claim(items, [False] * len(items), (), shard, owner, n, timeout)

    def done_and_get(self, item: Item, timeout: float | None = 0.0) -> Item | None:
        """``done(item)`` then ``get(item.shard, item.owner, timeout)``, the first try in one trip."""
        return self._release_and_get(item, timeout, ())

    def renew(self, item: Item) -> float:
        """Extend ``item``'s claim to now + ``claim_ttl``; returns (and stores in ``item``) the new deadline."""
        sent = time.monotonic()
        with scripts.redis_errors():
            reply = self._renew(self._route, self._args(item.key, item.token, repr(self.claim_ttl)))
        if not reply:
            raise ClaimLostError(f"claim on {item.key!r} by {item.owner!r} was lost")
        item.deadline, item.local_deadline = float(reply), sent + self.claim_ttl
        return item.deadline

    def reap_expired(self, limit: int = 100) -> int:
        """Queue again up to ``limit`` keys whose claim deadline passed; returns how many (a metric)."""
        with scripts.redis_errors():
            return int(self._reap(self._route, self._args(str(check_count("limit", limit)))))

    def rebalance(self, member_ttl: float, steps: int | None = None) -> Rebalance:
        """Drop members silent for ``member_ttl`` seconds; if the live ones differ from the ring, build
        their slot table and publish it with the ring (next epoch), then move each queued key whose
        shard changed, ``chunk`` entries per script call. Until the table is published every script
        routes by the old one; from then on ``add`` routes by the new one and ``get`` moves a key it
        finds in the wrong list. Interrupted (or cut at ``steps`` move chunks), the next call (any
        process) goes on; idempotent, and a key is never lost or duplicated."""
        with scripts.redis_errors():
            before, after, building = self._rebalance(self._route,
                                                      self._args(repr(check_seconds("member_ttl", member_ttl))))
        published = self.build_slots() if int(building) else None  # no SLOTS_STEP trip on a quiet tick
        moved = self.finish_rebalance(steps)
        epoch = published if published is not None else int(after)
        return Rebalance(epoch, moved, epoch != int(before))

    def build_slots(self, steps: int | None = None, per_trip: int = 16) -> int | None:
        """Build the slot table of a ring ``rebalance`` started, up to ``steps`` script calls (None: to
        the end), ``per_trip`` calls pipelined per round trip; each computes about ``slot_budget``
        scores. Returns the epoch if the table was published, else None."""
        done, published, calls = 0, None, 1  # the first call tells how many slots one call builds
        while steps is None or done < steps:
            calls = calls if steps is None else min(calls, steps - done)
            with scripts.redis_errors():
                pipe = self.client.pipeline(transaction=False)
                for _ in range(calls):
                    self._slots_step(self._route, self._args(str(self.slot_budget)), client=pipe)
                replies = pipe.execute()
            done += calls
            published = max([int(reply[1]) for reply in replies if int(reply[1])], default=published)
            left, built = int(replies[-1][0]), int(replies[-1][2])
            if not left:
                break
            calls = max(1, min(per_trip, -(-left // max(built, 1))))
        return published

    def finish_rebalance(self, steps: int | None = None) -> int:
        """Run up to ``steps`` (None: all) chunks of a published rebalance; returns how many keys moved."""
        moved, done = 0, 0
        while steps is None or done < steps:
            with scripts.redis_errors():
                count, left = self._rebalance_step(self._route, self._args(str(self.chunk)))
            moved, done = moved + int(count), done + 1
            if not int(left):
                break
        return moved

    def release_owner(self, owner: str) -> int:
        """Queue again, at once, every key claimed by ``owner``; returns how many.

        Only for an owner whose process has exited: on a live worker a second worker would take its
        key while it still reconciles it (I1). Each claim is dropped and its key marked dirty (its
        earlier add time kept) and pushed to its current shard; ``chunk`` claims are scanned per call.
        """
        released, cursor = 0, "0"
        while True:
            with scripts.redis_errors():
                cursor, count = self._release_owner(self._route, self._args(owner, cursor, str(self.chunk)))
            released, cursor = released + int(count), _text(cursor)
            if cursor == "0":
                return released

    def len(self, shard: str | None = None) -> int:
        """Keys waiting in ``shard``'s ready list, or in every list of the ring (``workqueue_depth``)."""
        with scripts.redis_errors():
            return int(self._len(self._route, self._args(shard or "")))

    def num_processing(self) -> int:
        """Keys claimed by any worker right now."""
        with scripts.redis_errors():
            return int(self.client.hlen(self.keys.processing))

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """Stop handing out keys from this instance; see the class contract."""
        self._shutting_down = True

    def shut_down_with_drain(self, timeout: float | None = None) -> bool:
        """``shut_down``, then wait for this instance's handed-out items to be done; False on timeout."""
        self.shut_down()
        with self._drained:
            return self._drained.wait_for(lambda: not self._outstanding, timeout)

    def _release(self, item: Item, forget_in: tuple[str, ...]) -> None:
        """DONE, clearing ``item.key``'s field in each hash of ``forget_in`` if the claim was held."""
        with scripts.redis_errors():
            released = self._done(self._route, self._args(item.key, item.token, *forget_in))
        self._forget_outstanding(item)
        if not released:
            raise ClaimLostError(f"claim on {item.key!r} by {item.owner!r} was lost")

    def _release_and_get(self, item: Item, timeout: float | None, forget_in: tuple[str, ...]) -> Item | None:
        if self._shutting_down:
            self._release(item, forget_in)
            raise ShutDownError("the work queue is shut down")
        sent = time.monotonic()
        with scripts.redis_errors():
            reply = self._done_and_get(self._route, self._args(item.key, item.token, item.shard, item.owner,
                                                               *self._take_args(), *forget_in))
        self._forget_outstanding(item)
        if reply[0] == -1:
            raise ClaimLostError(f"claim on {item.key!r} by {item.owner!r} was lost")
        following = self._item(reply, item.shard, item.owner, sent)
        if following is not None or timeout == 0:
            return following
        return self.get(item.shard, item.owner, timeout)

    def _batch_and_claim(self, items: Sequence[Item], forget: Sequence[bool], forget_in: tuple[str, ...],
                         shard: str, owner: str, n: int, timeout: float | None) -> tuple[list[bool], list[Item]]:
        """BATCH: release ``items`` (forgetting in ``forget_in`` those flagged), then claim up to ``n``."""
        if n > 0:
            validate_shard_id(shard)
            if self._shutting_down:
                if items:
                    self._batch_and_claim(items, forget, forget_in, shard, owner, 0, 0)
                raise ShutDownError("the work queue is shut down")
        give_up = None if timeout is None else time.monotonic() + timeout
        releases = [part for item, flag in zip(items, forget, strict=True)
                    for part in (item.key, item.token, "1" if flag else "0")]
        released: list[bool] = []
        while True:
            sent = time.monotonic()
            with scripts.redis_errors():
                reply = self._batch(self._route, self._args(shard, owner, *self._take_args(), str(n),
                                                            str(len(forget_in)), *forget_in, *releases))
            if releases:
                released = [bool(int(flag)) for flag in reply[0]]
                for item in items:
                    self._forget_outstanding(item)
                releases, items = [], []
            claimed = reply[1]
            count = int(claimed[0])
            if n < 1 or count:
                return released, self._batch_items(claimed, count, shard, owner, sent)
            if self._shutting_down:
                raise ShutDownError("the work queue is shut down")
            if not self._wait(shard, float(claimed[2]), give_up):
                return released, []

    def _batch_items(self, reply: list, count: int, shard: str, owner: str, sent: float) -> list[Item]:
        if not count:
            return []
        claimed_at, deadline = float(reply[3]), float(reply[4])
        items = [Item(key=_text(reply[i]), token=_text(reply[i + 1]), shard=shard, owner=owner,
                      enqueued_at=float(reply[i + 2]), claimed_at=claimed_at, deadline=deadline,
                      local_deadline=sent + (deadline - claimed_at)) for i in range(5, 5 + 3 * count, 3)]
        with self._drained:
            self._outstanding.update((item.key, item.token) for item in items)
        return items

    def _args(self, *args: str) -> list[str]:
        """A script's ARGV: the key prefix, the time source ('' = Redis TIME), then ``args``."""
        return [self._prefix, script_time(self.clock), *args]

    def _take_args(self) -> list[str]:
        return [repr(self.claim_ttl), self._qps, self._burst, str(self.promote_limit)]

    def _item(self, reply: list, shard: str, owner: str, sent: float) -> Item | None:
        if reply[0] != 1:
            return None
        claimed_at, deadline = float(reply[6]), float(reply[4])
        item = Item(key=_text(reply[1]), token=_text(reply[2]), shard=shard, owner=owner,
                    enqueued_at=float(reply[3]), claimed_at=claimed_at, deadline=deadline,
                    local_deadline=sent + (deadline - claimed_at))
        with self._drained:
            self._outstanding.add((item.key, item.token))
        return item

    def _forget_outstanding(self, item: Item) -> None:
        with self._drained:
            self._outstanding.discard((item.key, item.token))
            if not self._outstanding:
                self._drained.notify_all()

    def _wait(self, shard: str, hint: float, give_up: float | None) -> bool:
        """Sleep until a wake-up for ``shard``, the hint (-1: none) or ``max_wait``; False past ``give_up``."""
        wait = self.max_wait if hint < 0 else min(max(hint, 0.001), self.max_wait)
        if give_up is not None:
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                return False
            wait = min(wait, remaining)
        with scripts.redis_errors():
            self.client.blpop([self.keys.notify(shard)], timeout=max(wait, 0.001))
        return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
