"""Testing an operator: a fake context for unit tests, and launchers for a real test environment.

- :class:`FakeContext`: a reconcile's context over objects in memory (no Redis, no API server).
- :class:`OperatorRunner`: ``shard-operator run`` as a subprocess against a real environment.
- :class:`ControlPlane`, :class:`RedisServer`: etcd + kube-apiserver, and redis-server.

The launchers are used by shard-operator's own tests (as pytest fixtures, see :mod:`.fixtures`), by the
``shard-operator testenv`` command, and by operator authors who want the same embedded
environment for their tests. Every launcher picks free loopback ports, works in a temporary
folder, waits until its server is ready, and leaves no process behind when stopped.
"""

from shard_operator.testing.controlplane import ControlPlane
from shard_operator.testing.fake import FakeContext, RecordedEvent, Requeue, Write
from shard_operator.testing.redis_server import RedisServer
from shard_operator.testing.runner import OperatorRunner

__all__ = ["ControlPlane", "FakeContext", "OperatorRunner", "RecordedEvent", "RedisServer", "Requeue", "Write"]
