#!/usr/bin/env bash
# Build kube-apiserver, etcd and kube-controller-manager from the pinned Go modules into bin/.
# Static (CGO_ENABLED=0) with the Kubernetes version stamped, like upstream's release builds.
# Skipped when nothing that goes into the build changed since the last one (bin/.stamp).
set -euo pipefail
cd "$(dirname "$0")"

command -v go >/dev/null || { echo "build.sh: Go is not installed (need Go >= 1.24)" >&2; exit 1; }

k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' go.mod)
[[ $k8s_version =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { echo "build.sh: cannot read k8s.io/kubernetes version from go.mod" >&2; exit 1; }
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
binaries=(kube-apiserver etcd kube-controller-manager)

stamp=$( { go version; cat go.mod go.sum build.sh; find cmd -name '*.go' -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -d' ' -f1)
all_built() { local b; for b in "${binaries[@]}"; do [[ -x bin/$b ]] || return 1; done; }
if [[ -f bin/.stamp && $(cat bin/.stamp) == "$stamp" ]] && all_built; then
  echo "control plane $k8s_version is up to date in tools/controlplane/bin"
  exit 0
fi

echo "building kube-apiserver, etcd and kube-controller-manager $k8s_version (first build: several minutes)"
mkdir -p bin
rm -f bin/.stamp
pkg=k8s.io/component-base/version
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o bin/ \
  -ldflags "-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
  ./cmd/...
echo "$stamp" > bin/.stamp
bin/kube-apiserver --version
