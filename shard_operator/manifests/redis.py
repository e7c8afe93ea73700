"""Redis for the operator: one instance with persistence, a password from a Secret, and a NetworkPolicy
that lets only the operator's pods reach it.

Where it sits: the last part of the generated base (:mod:`shard_operator.manifests.rendering`). The
password never appears in an argument list or a manifest: the Secret (made by the overlay's
``secretGenerator`` in dev, created by the platform team in production) reaches redis-server as a config
file written at start from ``REDISCLI_AUTH``, the variable redis-cli itself reads for the probes. The
operator reads the same Secret as a mounted file (:mod:`.workload`). A managed Redis replaces all of this
in production: drop these objects in the overlay, patch the operator's ``SHARD_OPERATOR_REDIS_URL`` to the
managed instance, and put its password in the Secret ``redis-auth`` (key ``password``).
"""

from __future__ import annotations

from typing import Any

from shard_operator.manifests.workload import CONTAINER_SECURITY, WorkloadOptions, pod_security_context

__all__ = ["REDIS_IMAGE", "redis_manifests"]

REDIS_IMAGE = "redis:7.4.2-alpine"
_START = ('umask 077; printf "requirepass %s\\n" "$REDISCLI_AUTH" > /tmp/redis.conf; '
          "exec redis-server /tmp/redis.conf --dir /data --appendonly yes --appendfsync everysec "
          "--save 300 10 --protected-mode no")


def redis_manifests(options: WorkloadOptions) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/part-of": options.name}
    meta = {"name": options.redis_service, "namespace": options.namespace, "labels": labels}
    probe = {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5, "timeoutSeconds": 2}
    container = {
        "name": "redis", "image": REDIS_IMAGE, "command": ["sh", "-c", _START],
        "env": [{"name": "REDISCLI_AUTH",
                 "valueFrom": {"secretKeyRef": {"name": options.redis_secret, "key": "password"}}}],
        "ports": [{"name": "redis", "containerPort": 6379}],
        "readinessProbe": probe, "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
        "spec": {"serviceName": options.redis_service, "replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"securityContext": pod_security_context(999),
                                       "automountServiceAccountToken": False,
                                       "containers": [container],
                                       "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory",
                                                                                "sizeLimit": "1Mi"}}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                           "spec": {"accessModes": ["ReadWriteOnce"],
                                                    "resources": {"requests": {"storage": "1Gi"}}}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"selector": labels, "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {**meta, "name": f"{options.redis_service}-from-operator"},
              "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": options.labels}}],
                                    "ports": [{"port": 6379, "protocol": "TCP"}]}]}}
    return [statefulset, service, policy]
