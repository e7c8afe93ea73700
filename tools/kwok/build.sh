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
echo "$stamp" > bin/.stamp
echo "built tools/kwok/bin/kwok"
