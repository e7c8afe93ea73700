"""Sharded ingest (Kubernetes >= 1.36): hash ranges of the primary resource, each listed and watched by
one ingest member, so that no process sees every event. So far the plan only (:mod:`.plan`): which
member watches which range, and how a range changes hands without a change going unseen."""

from shard_operator.ingest.plan import Plan, next_plan

__all__ = ["Plan", "next_plan"]
