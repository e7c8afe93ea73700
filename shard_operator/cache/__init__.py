"""The shared object cache in Redis: the leader's informers write it, every worker reads it."""

from shard_operator.cache.reader import CacheReader
from shard_operator.cache.selector import LabelSelector, Requirement
from shard_operator.cache.writer import CacheWriter

__all__ = ["CacheReader", "CacheWriter", "LabelSelector", "Requirement"]
