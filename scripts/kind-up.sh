#!/usr/bin/env bash
# Create a kind cluster, build the operator image, load it into the cluster and apply the dev overlay
# (namespace, Website CRD, RBAC, the operator StatefulSet, Redis with a generated password).
# Needs docker, kind and kubectl on PATH. Usage: scripts/kind-up.sh [cluster-name]   (default: shard-operator)
# Then: kubectl -n shard-operator get pods; python -m examples.website sample | kubectl apply -f -;
# kubectl -n shard-operator scale statefulset shard-operator --replicas 4
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${1:-shard-operator}
image=shard-operator:dev
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-up.sh: $tool is not installed" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
fi
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"
kubectl --context "kind-$cluster" apply --server-side -k deploy/overlays/dev
kubectl --context "kind-$cluster" -n shard-operator rollout status statefulset/redis --timeout 180s
kubectl --context "kind-$cluster" -n shard-operator rollout status statefulset/shard-operator --timeout 180s
echo "ready: kubectl --context kind-$cluster -n shard-operator get pods"
