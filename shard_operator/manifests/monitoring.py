"""The monitoring kit: ServiceMonitor, PrometheusRule and the Grafana dashboard, generated from code.

Where it sits: ``shard-operator manifests --monitoring-out deploy/monitoring`` writes these beside the
base (:mod:`.rendering`). The dashboard is built with grafana-foundation-sdk, Grafana's own typed
builders, so its JSON is never hand-edited; :data:`PANELS` is the single list of panels and queries that
tests evaluate against a real Prometheus. ``rules.yml`` (plain Prometheus rule file) and
``dashboard.json`` are also what docker-compose mounts into Prometheus and Grafana.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from shard_operator.manifests.alerts import rule_groups
from shard_operator.manifests.workload import METRICS_SERVICE_LABEL, WorkloadOptions

__all__ = ["PANELS", "dashboard", "render_monitoring"]

#: (title, unit, [(query, legend)]) of every dashboard panel, in order.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Reconciles per second", "ops", [("sum by (controller, result) (rate(controller_runtime_reconcile_total[1m]))",
                                       "{{controller}} {{result}}")]),
    ("Reconcile errors per second", "ops", [
        ("sum by (controller) (rate(controller_runtime_reconcile_errors_total[1m]))", "{{controller}}")]),
    ("Reconcile time (p50, p99)", "s", [
        ("histogram_quantile(0.5, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket[1m])))", "p50"),
        ("histogram_quantile(0.99, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket[1m])))", "p99")]),
    ("Queue depth", "short", [("sum by (name) (workqueue_depth)", "{{name}}")]),
    ("Queue latency (p99)", "s", [
        ("histogram_quantile(0.99, sum by (le) (rate(workqueue_queue_duration_seconds_bucket[1m])))", "p99")]),
    ("Queue adds and retries per second", "ops", [("sum (rate(workqueue_adds_total[1m]))", "adds"),
                                                  ("sum (rate(workqueue_retries_total[1m]))", "retries")]),
    ("Unfinished work", "s", [("sum by (name) (workqueue_unfinished_work_seconds)", "{{name}}")]),
    ("Live shards and rebalances", "short", [
        ("max by (controller) (shard_operator_live_shards)", "live shards"),
        ("sum by (controller) (increase(shard_operator_shard_assignments_total[5m]))", "ring changes (5m)"),
        ("sum by (controller) (increase(shard_operator_shard_movements_total[5m]))", "keys moved (5m)")]),
    ("Claim expiries (15m)", "short", [("sum by (controller) (increase(shard_operator_claim_expiries_total[15m]))",
                                        "{{controller}}")]),
    ("Background jobs per second", "ops", [
        ("sum by (task, outcome) (rate(shard_operator_jobs_completed_total[1m]))", "{{task}} {{outcome}}")]),
    ("Leader", "short", [("max by (pod) (leader_election_master_status)", "{{pod}}")]),
    ("CPU per process", "percentunit", [("sum by (pod, process) (rate(process_cpu_seconds_total[1m]))",
                                         "{{pod}} {{process}}")]),
    ("Memory per process", "bytes", [("sum by (pod, process) (process_resident_memory_bytes)",
                                      "{{pod}} {{process}}")]),
]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard model (JSON-ready dict), built with grafana-foundation-sdk."""
    from grafana_foundation_sdk.builders import dashboard as builders
    from grafana_foundation_sdk.builders import prometheus, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (builders.Dashboard("shard-operator").uid("shard-operator").tags(["shard-operator", "kubernetes"])
             .refresh("30s").time("now-1h", "now").timezone("browser")
             .with_variable(builders.DatasourceVariable("datasource").label("Data source").type("prometheus")))
    for title, unit, queries in PANELS:
        panel = timeseries.Panel().title(title).unit(unit).datasource(source).height(8).span(12)
        for index, (expr, legend) in enumerate(queries):
            panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend)
                                      .ref_id(chr(ord("A") + index)))
        board = board.with_panel(panel)
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def render_monitoring(options: WorkloadOptions, header: str) -> dict[str, str]:
    """File name → text of ``deploy/monitoring``: a kustomization, the ServiceMonitor, the PrometheusRule,
    the dashboard in a ConfigMap (Grafana's sidecar picks ``grafana_dashboard: "1"``), and the plain
    ``rules.yml`` and ``dashboard.json``."""
    labels = {"app.kubernetes.io/name": options.name, "app.kubernetes.io/component": "monitoring"}
    meta = {"namespace": options.namespace, "labels": labels}
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": options.name, **meta},
               "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": options.name,
                                                     METRICS_SERVICE_LABEL: "true"}},
                        "endpoints": [{"port": "metrics", "interval": "15s",
                                       "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_name"],
                                                        "targetLabel": "pod"}]}]}}
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": options.name, **meta}, "spec": rule_groups()}
    board = json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": f"{options.name}-dashboard", "namespace": options.namespace,
                              "labels": {**labels, "grafana_dashboard": "1"}},
                 "data": {"shard-operator.json": board}}

    def dump(doc: dict[str, Any]) -> str:
        return header + yaml.safe_dump(doc, sort_keys=False, width=120)

    files = {"service-monitor.yaml": dump(monitor), "prometheus-rule.yaml": dump(rule),
             "dashboard-configmap.yaml": dump(configmap)}
    files["kustomization.yaml"] = dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                        "resources": list(files)})
    files["rules.yml"] = dump(rule_groups())
    files["dashboard.json"] = board
    return files
