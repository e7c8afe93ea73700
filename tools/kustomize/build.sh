#!/usr/bin/env bash
# Build kustomize from the pinned Go module (sigs.k8s.io/kustomize/kustomize/v5) into
# bin/kustomize, which the deploy tests use to render the overlays. Never a prebuilt binary.
# Skipped when nothing that goes into the build changed since the last one (bin/.stamp).
set -euo pipefail
cd "$(dirname "$0")"

command -v go >/dev/null || { echo "build.sh: Go is not installed (need Go >= 1.24)" >&2; exit 1; }

stamp=$( { go version; cat go.mod go.sum build.sh; } | sha256sum | cut -d' ' -f1)
if [[ -f bin/.stamp && $(cat bin/.stamp) == "$stamp" && -x bin/kustomize ]]; then
  echo "kustomize is up to date in tools/kustomize/bin"
  exit 0
fi

version=$(grep -oE 'sigs.k8s.io/kustomize/kustomize/v5 v[0-9.]+' go.mod | awk '{print $2}')
echo "building kustomize $version"
mkdir -p bin
rm -f bin/.stamp
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o bin/kustomize \
  sigs.k8s.io/kustomize/kustomize/v5
echo "$stamp" > bin/.stamp
echo "built tools/kustomize/bin/kustomize"
