"""Example operators built with shard-operator.

Run one with ``shard-operator run --app examples.widgets:operator``.
"""
