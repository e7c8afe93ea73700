#!/usr/bin/env bash
# Build KWOK's controller (sigs.k8s.io/kwok, cmd/kwok) from the pinned Go module into bin/kwok: fake nodes
# and pods with realistic lifecycles on the embedded control plane (the Kubemark role). Never a prebuilt binary.
# The first build compiles the Kubernetes client libraries: many minutes on 2 cores.
# Skipped when nothing that goes into the build changed since the last one (bin/.stamp).
set -euo pipefail
cd "$(dirname "$0")"

command -v go >/dev/null || { echo "build.sh: Go is not installed (need the Go version in go.mod)" >&2; exit 1; }

stamp=$( { go version; cat go.mod go.sum build.sh; } | sha256sum | cut -d' ' -f1)
if [[ -f bin/.stamp && $(cat bin/.stamp) == "$stamp" && -x bin/kwok ]]; then
  echo "kwok is up to date in tools/kwok/bin"
  exit 0
fi

version=$(awk '$1 == "sigs.k8s.io/kwok" {print $2; exit}' go.mod)
echo "building kwok $version"
mkdir -p bin
rm -f bin/.stamp
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o bin/kwok \
  sigs.k8s.io/kwok/cmd/kwok
# KWOK's own "fast" stages (Node Ready at once; Pod Running, then deleted when asked), from the same module.
stages=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
for f in "$stages"/node/fast/node-initialize.yaml "$stages"/node/heartbeat/node-heartbeat.yaml \
         "$stages"/pod/fast/pod-ready.yaml "$stages"/pod/fast/pod-complete.yaml "$stages"/pod/fast/pod-delete.yaml; do
  cat "$f"; echo "---"
done > bin/stages.yaml
echo "$stamp" > bin/.stamp
echo "built tools/kwok/bin/kwok and bin/stages.yaml"
