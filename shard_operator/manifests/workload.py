"""The operator's workload: StatefulSet, its Services, PodDisruptionBudget and NetworkPolicy.

Where it sits: ``shard-operator manifests`` calls :func:`workload_manifests` after the RBAC. The
StatefulSet runs ``shard-operator run --app <module:attr>`` in R pods; the pod's name (downward API)
is its shard identity (``POD_NAME`` → ``--pod-name``), so ``kubectl scale`` changes the shard ring. The
pod passes the Pod Security "restricted" level (non-root, read-only root filesystem, no capabilities,
``RuntimeDefault`` seccomp) and its grace period covers the drain (``--drain-timeout`` plus a margin).
The Redis password comes from a Secret mounted as a read-only file (``--redis-password-file``): the
manager adds it to the Redis URL in memory, so it never appears in a manifest nor in an environment
variable that the pod's processes inherit (``/proc/<pid>/environ``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["METRICS_SERVICE_LABEL", "REDIS_AUTH_MOUNT", "WorkloadOptions", "pod_security_context", "workload_manifests"]

METRICS_PORT = 8080
#: Where the Secret with the Redis password is mounted (its ``password`` key is the file ``password``).
REDIS_AUTH_MOUNT = "/etc/shard-operator/redis-auth"
#: The label only the metrics Service carries: the ServiceMonitor selects on it, so each pod is scraped once
#: (the headless Service selects the same pods).
METRICS_SERVICE_LABEL = "shard-operator.dev/metrics"


@dataclass(frozen=True)
class WorkloadOptions:
    """What the generated workload looks like; the overlays patch replicas, resources and the image tag."""

    name: str = "shard-operator"
    namespace: str = "shard-operator"
    app: str = "examples.website:operator"
    image: str = "shard-operator:0.1.0"
    replicas: int = 2
    workers: int = 2
    drain_timeout: int = 30
    redis_service: str = "redis"
    redis_secret: str = "redis-auth"
    #: Watch only the pod's own namespace (a namespace-scoped operator) instead of every namespace.
    own_namespace_only: bool = False
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "500m", "memory": "256Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "2", "memory": "1Gi"})

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/component": "operator"}


def pod_security_context(user: int) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"}}


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                      "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _env(options: WorkloadOptions) -> list[dict[str, Any]]:
    plain = {"SHARD_OPERATOR_WORKERS": str(options.workers), "SHARD_OPERATOR_METRICS_ADDRESS": f":{METRICS_PORT}",
             "SHARD_OPERATOR_DRAIN_TIMEOUT": str(options.drain_timeout)}
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SHARD_OPERATOR_LEASE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        *([{"name": "SHARD_OPERATOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
          if options.own_namespace_only else []),
        {"name": "SHARD_OPERATOR_REDIS_URL", "value": f"redis://{options.redis_service}:6379/0"},
        {"name": "SHARD_OPERATOR_REDIS_PASSWORD_FILE", "value": f"{REDIS_AUTH_MOUNT}/password"},
        *({"name": k, "value": v} for k, v in plain.items()),
    ]


def statefulset(options: WorkloadOptions) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 3,
             "failureThreshold": 3}
    container = {
        "name": "operator", "image": options.image, "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--app", options.app],
        "env": _env(options),
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "startupProbe": {**probe, "failureThreshold": 30, "periodSeconds": 2},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5},
        "resources": {"requests": options.requests, "limits": options.limits},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "redis-auth", "mountPath": REDIS_AUTH_MOUNT, "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": options.name, "namespace": options.namespace, "labels": options.labels},
        "spec": {
            "serviceName": f"{options.name}-headless", "replicas": options.replicas,
            "podManagementPolicy": "Parallel", "selector": {"matchLabels": options.labels},
            "template": {
                "metadata": {"labels": options.labels},
                "spec": {
                    "serviceAccountName": options.name,
                    # In-flight reconciles drain, then the Lease is released: longer than --drain-timeout.
                    "terminationGracePeriodSeconds": options.drain_timeout + 15,
                    "securityContext": pod_security_context(65532),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                                # readable by the pod's group (fsGroup) only
                                {"name": "redis-auth", "secret": {
                                    "secretName": options.redis_secret, "defaultMode": 0o440,
                                    "items": [{"key": "password", "path": "password"}]}}],
                },
            },
        },
    }


def _service(options: WorkloadOptions, name: str, headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": options.labels,
                            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}
    if headless:
        spec.update(clusterIP="None", publishNotReadyAddresses=True)
    labels = {**options.labels, "app.kubernetes.io/part-of": options.name}
    if not headless:
        labels[METRICS_SERVICE_LABEL] = "true"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": options.namespace, "labels": labels}, "spec": spec}


def workload_manifests(options: WorkloadOptions) -> list[dict[str, Any]]:
    """The StatefulSet, the headless and metrics Services, the PodDisruptionBudget and the operator's
    NetworkPolicy (ingress only to the metrics port)."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": options.name, "namespace": options.namespace, "labels": options.labels},
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": options.labels}}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": options.name, "namespace": options.namespace, "labels": options.labels},
              "spec": {"podSelector": {"matchLabels": options.labels}, "policyTypes": ["Ingress"],
                       "ingress": [{"ports": [{"port": METRICS_PORT, "protocol": "TCP"}]}]}}
    return [statefulset(options), _service(options, f"{options.name}-headless", headless=True),
            _service(options, f"{options.name}-metrics", headless=False), pdb, policy]
