"""Workers: the processes that consume one shard's keys and reconcile them (docs/design.md §2.6).

:class:`WorkerPool` starts and supervises one process per shard; each runs a :class:`ShardWorker`
(claim a key, reconcile it, apply the outcome that :func:`decide` picks, release the claim).
"""

from shard_operator.worker.outcome import Action, Decision, decide
from shard_operator.worker.pool import WorkerPool, WorkerSpec
from shard_operator.worker.runner import ShardWorker

__all__ = ["Action", "Decision", "ShardWorker", "WorkerPool", "WorkerSpec", "decide"]
