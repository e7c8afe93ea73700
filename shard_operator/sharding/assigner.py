"""The assigner turns live members into the ring and has the queue move queued keys to their new shards.

Where it sits: one designated process (the leader) calls ``rebalance`` every second or so. The work
is one script of the queue (:meth:`WorkQueue.rebalance <shard_operator.queue.WorkQueue.rebalance>`),
because it rewrites the queue's ready lists and the queue keeps its invariant in one package: it
prunes members whose heartbeat (Redis time) is older than ``member_ttl``, and if the sorted live ids
differ from the ring it builds their slot table in bounded chunks, publishes it with the ring and the
next epoch in one step, and moves every *queued* key (ready list or pending) whose shard changed to
the ready list of its new shard. Keys being processed are in no
list, so they are never dispatched again before their ``done`` or claim expiry, which then push
them to the shard of the ring current at that time.
"""

from __future__ import annotations

import redis

from shard_operator.clock import ManualClock
from shard_operator.keys import Keys
from shard_operator.queue import WorkQueue
from shard_operator.queue.checks import check_seconds
from shard_operator.queue.workqueue import Rebalance

__all__ = ["Assigner", "Rebalance"]


class Assigner:
    """Publishes the ring of live shards and keeps queued keys on the shard the ring assigns them.

    Contract of ``rebalance()``: publishes the ring atomically, then moves queued keys in bounded
    chunks (meanwhile ``get`` moves a key found in the wrong list instead of handing it out; a run
    cut short is finished by the next); never loses or duplicates a key; idempotent (a second call
    with the same members changes nothing and returns the same epoch); bumps the epoch exactly when
    the live set changed; never touches a key being processed; with no live shard, queued keys wait
    in the pending list and move to shards when one joins. Run it in one process; two concurrent runs are still safe.
    ``clock`` is for tests (:class:`~shard_operator.clock.ManualClock`); time is Redis's otherwise.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, member_ttl: float = 10.0,
                 clock: ManualClock | None = None) -> None:
        self.client, self.keys = client, keys
        self.member_ttl = check_seconds("member_ttl", member_ttl)
        self._queue = WorkQueue(client, keys, clock=clock)

    def rebalance(self) -> Rebalance:
        return self._queue.rebalance(self.member_ttl)
