"""Sharded ingest (Kubernetes >= 1.36): hash ranges of the primary resource, each listed and watched by
one ingest member, so that no process sees every event: the plan (:mod:`.plan`) says which member
watches which range and how a range changes hands without a change going unseen; a member
(:mod:`.member`) runs the informers of its ranges into the shared cache and the handlers; the registry
(:mod:`.registry`) keeps the plan, the heartbeats and the reports in Redis. The manager runs them with
``--sharded-ingest`` (:mod:`shard_operator.manager.ingesting`)."""

from shard_operator.ingest.member import IngestMember
from shard_operator.ingest.plan import Plan, next_plan
from shard_operator.ingest.registry import IngestRegistry

__all__ = ["IngestMember", "IngestRegistry", "Plan", "next_plan"]
