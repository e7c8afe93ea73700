"""The alerting rules of a shard-operator deployment, defined once in code.

Where it sits: the monitoring kit (:mod:`shard_operator.manifests.monitoring`) writes these rules as a
Prometheus rule file (``deploy/monitoring/rules.yml``, for docker-compose and ``promtool``) and as a
PrometheusRule for the Prometheus Operator. Each alert has a severity, a summary, a description and a
runbook section in ``docs/runbook.md`` (anchor = the alert's name in lower case); ``promtool test rules``
(``tests/deploy/alerts_test.yml``) unit-tests each one. Thresholds are the SLOs stated in the runbook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ALERTS", "Alert", "rule_groups"]

RUNBOOK = "https://github.com/shard-operator/shard-operator/blob/main/docs/runbook.md"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        return {"alert": self.name, "expr": self.expr, "for": self.duration,
                "labels": {"severity": self.severity},
                "annotations": {"summary": self.summary, "description": self.description,
                                "runbook_url": f"{RUNBOOK}#{self.name.lower()}"}}


ALERTS = (
    # absent(): when every pod is down (or none is scraped) no series is left for the comparison to fail on.
    Alert("ShardOperatorNoLeader",
          "(max by (name) (leader_election_master_status) < 1) or absent(leader_election_master_status)",
          "1m", "critical",
          "No shard-operator pod holds the leader Lease{{ with $labels.name }} {{ . }}{{ end }}",
          "{{ with $labels.name }}No informer runs for {{ . }}{{ else }}No pod reports leader election at all "
          "(every pod is down or none is scraped){{ end }}: changes are not seen and no key is queued."),
    Alert("ShardOperatorQueueDepthHigh",
          "sum by (name) (workqueue_depth) > 1000", "10m", "warning",
          "Work queue {{ $labels.name }} holds {{ $value }} keys",
          "More than 1000 keys have waited for 10 minutes: the workers cannot keep up (scale the StatefulSet) "
          "or the global rate limit is too low."),
    Alert("ShardOperatorQueueLatencyHigh",
          "histogram_quantile(0.99, sum by (name, le) (rate(workqueue_queue_duration_seconds_bucket[5m]))) > 30",
          "10m", "warning",
          "Keys of {{ $labels.name }} wait {{ $value | humanizeDuration }} before a worker takes them (p99)",
          "The 99th percentile of the time a key waits in the queue is over the 30 s SLO."),
    Alert("ShardOperatorReconcileErrorsHigh",
          "sum by (controller) (rate(controller_runtime_reconcile_errors_total[5m])) / "
          "sum by (controller) (rate(controller_runtime_reconcile_total[5m])) > 0.1",
          "15m", "warning",
          "{{ $value | humanizePercentage }} of {{ $labels.controller }}'s reconciles fail",
          "More than 10% of reconciles ended in an error for 15 minutes; failing keys back off, so convergence "
          "is slow or stopped."),
    Alert("ShardOperatorClaimExpiries",
          "sum by (controller) (increase(shard_operator_claim_expiries_total[15m])) > 3", "0m", "warning",
          "{{ $value }} claims of {{ $labels.controller }} expired in 15 minutes",
          "Workers stopped renewing their claims (killed, paused, or cut off from Redis); their keys were "
          "handed out again."),
    Alert("ShardOperatorLeadershipChurn",
          "sum by (name) (changes(leader_election_master_status[1h])) > 6", "0m", "warning",
          "The leader Lease {{ $labels.name }} changed hands more than 3 times in an hour",
          "Each change stops the informers and relists; frequent changes mean the leader cannot renew in time "
          "(API server latency, CPU starvation, or restarts)."),
    Alert("ShardOperatorJobFailures",
          'sum by (controller, task) (rate(shard_operator_jobs_completed_total{outcome=~"failed|timed_out|abandoned"}'
          "[15m])) / sum by (controller, task) (rate(shard_operator_jobs_completed_total[15m])) > 0.2",
          "15m", "warning",
          "{{ $value | humanizePercentage }} of {{ $labels.task }} jobs fail",
          "More than 20% of the background jobs of task {{ $labels.task }} failed, timed out or were abandoned."),
    Alert("ShardOperatorRedisUnreachable",
          "min by (namespace, pod) (shard_operator_redis_up) == 0", "1m", "critical",
          "{{ $labels.pod }} cannot reach Redis",
          "Without Redis no key is queued or handed out, and /readyz fails; the queues refill from the leader's "
          "relist once Redis is back."),
)


def rule_groups() -> dict[str, Any]:
    """The rule file's content: one group holding every alert."""
    return {"groups": [{"name": "shard-operator", "rules": [alert.rule() for alert in ALERTS]}]}
