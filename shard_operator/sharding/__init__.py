"""Sharding: membership heartbeats, the ring of live shards with its epoch, and key → shard (docs/design.md §2.4).

Workers announce their shard with :class:`Membership`; one :class:`Assigner` publishes the ring and
has the queue build the new ring's slot table and move queued keys when it changes; :class:`Router`
maps keys to shards in Python with the same slot table (:mod:`shard_operator.queue.hashing`: key →
slot, slot → shard by rendezvous hashing), the table the queue's scripts route with.
Sharding depends on the queue, never the reverse.
"""

from shard_operator.queue.hashing import shard_for
from shard_operator.sharding.assigner import Assigner, Rebalance
from shard_operator.sharding.membership import Membership, live_members
from shard_operator.sharding.ring import Ring, Router

__all__ = ["Assigner", "Membership", "Rebalance", "Ring", "Router", "live_members", "shard_for"]
