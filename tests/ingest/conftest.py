"""The ingest's Redis state is tested on fakeredis and on the real redis-server, like the queue's."""

from tests.queue.backends import client, clock, connect, keys

__all__ = ["client", "clock", "connect", "keys"]
