"""Load, stress and fault-injection drivers for shard-operator; each module prints its figures and
saves them as JSON under ``loadtest/results/``."""
