"""Every queue test runs on fakeredis and on the real redis-server (marked ``redis``)."""

from tests.queue.backends import client, clock, connect, keys

__all__ = ["client", "clock", "connect", "keys"]
