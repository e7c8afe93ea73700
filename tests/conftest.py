"""Fixtures shared by every test package: the real redis-server and control plane launchers."""

pytest_plugins = ["shard_operator.testing.fixtures"]
