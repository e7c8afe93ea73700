"""Lease-based leader election: exactly one pod runs the informers at a time (docs/design.md §2.9).

The manager (docs/design.md §2.10) runs a :class:`LeaderElector` in every pod; the one that holds the
``coordination.k8s.io/v1`` Lease runs the informers that feed the cache and the work queues, and
stops them at once when it can no longer renew. Workers are not leader-gated. The semantics are
client-go's ``tools/leaderelection``:

- :mod:`~shard_operator.leaderelection.elector`: when to take, renew, give up and hand over the Lease.
- :mod:`~shard_operator.leaderelection.lease`: the Lease record and its optimistic-concurrency I/O.
"""

from shard_operator.leaderelection.elector import JITTER_FACTOR, LeaderElector
from shard_operator.leaderelection.lease import LeaderElectionRecord, LeaseLock

__all__ = ["JITTER_FACTOR", "LeaderElectionRecord", "LeaderElector", "LeaseLock"]
