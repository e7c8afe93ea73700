"""Sharding: membership heartbeats, the ring of live shards with its epoch, and key → shard (docs/design.md §2.4).

Workers announce their shard with :class:`Membership`; one :class:`Assigner` publishes the ring and
has the queue move queued keys when it changes; :class:`Router` maps keys to shards with
rendezvous hashing (:mod:`shard_operator.queue.hashing`), the function the queue's scripts route
with. Sharding depends on the queue, never the reverse.
"""

from shard_operator.queue.hashing import shard_for
from shard_operator.sharding.assigner import Assigner, Rebalance
from shard_operator.sharding.membership import Membership, live_members
from shard_operator.sharding.ring import Ring, Router

__all__ = ["Assigner", "Membership", "Rebalance", "Ring", "Router", "live_members", "shard_for"]
