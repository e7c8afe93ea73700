"""Launchers for a real test environment: etcd + kube-apiserver, and redis-server.

Used by shard-operator's own tests (as pytest fixtures, see :mod:`.fixtures`), by the
``shard-operator testenv`` command, and by operator authors who want the same embedded
environment for their tests. Every launcher picks free loopback ports, works in a temporary
folder, waits until its server is ready, and leaves no process behind when stopped.
"""

from shard_operator.testing.controlplane import ControlPlane
from shard_operator.testing.redis_server import RedisServer

__all__ = ["ControlPlane", "RedisServer"]
