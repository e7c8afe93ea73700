"""shard-operator: run Kubernetes operators across CPU cores and pods.

An author writes a level-based reconciler; shard-operator runs informers in one elected
leader, keeps a shared object cache in Redis, hashes object keys into Redis-backed
rate-limited work queues (one per shard), and runs sharded worker processes that consume
them. See the README and docs/design.md for the architecture.
"""

from shard_operator.context import Context, NoJobQueueError
from shard_operator.errors import (
    ClaimLost,
    ConfigError,
    ShardOperatorError,
    TemporaryError,
    TerminalError,
)
from shard_operator.handler import For, Owns, Watches
from shard_operator.operator import Operator
from shard_operator.reconcile import Reconciler, Request, Result
from shard_operator.source import Resource

__all__ = [
    "ClaimLost",
    "ConfigError",
    "Context",
    "For",
    "NoJobQueueError",
    "Operator",
    "Owns",
    "Reconciler",
    "Request",
    "Resource",
    "Result",
    "ShardOperatorError",
    "TemporaryError",
    "TerminalError",
    "Watches",
    "__version__",
]

__version__ = "0.1.0"
