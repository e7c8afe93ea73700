#!/usr/bin/env bash
# Build kube-apiserver, etcd and kube-controller-manager from the pinned Go modules beside this
# script into DEST (default: ./bin, or ./bin-<VERSION> for another version). Two Kubernetes minors are
# pinned: 1.34 in go.mod/go.sum (the default) and 1.37 in go.1.37.mod/go.1.37.sum (built with
# `go build -modfile`; its API server has the alpha ShardedListAndWatch feature). Static
# (CGO_ENABLED=0) with the Kubernetes version stamped, like upstream's release builds. Skipped when nothing that goes into the build changed since the
# last one (DEST/.stamp). Prints progress: modules downloaded, packages compiled out of the total.
#
# Usage: build.sh [--kubernetes-version 1.34|1.37] [--dest DEST]
#        (`shard-operator testenv build` and `make controlplane` call it)
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
dest=
version=1.34
usage="usage: build.sh [--kubernetes-version 1.34|1.37] [--dest DEST]"
while (($#)); do
  case $1 in
    --dest) dest=${2:?--dest needs a folder}; shift 2 ;;
    --dest=*) dest=${1#--dest=}; shift ;;
    --kubernetes-version) version=${2:?--kubernetes-version needs a version}; shift 2 ;;
    --kubernetes-version=*) version=${1#--kubernetes-version=}; shift ;;
    *) echo "build.sh: unknown argument $1 ($usage)" >&2; exit 2 ;;
  esac
done
# The module file of each supported minor: go.mod for the default one, go.<minor>.mod for the others.
case $version in
  1.34) modfile=go.mod sumfile=go.sum; [[ -n $dest ]] || dest=$src/bin ;;
  1.37) modfile=go.1.37.mod sumfile=go.1.37.sum; [[ -n $dest ]] || dest=$src/bin-1.37 ;;
  *) echo "build.sh: unsupported Kubernetes version $version (supported: 1.34, 1.37)" >&2; exit 2 ;;
esac
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
cd "$src"

command -v go >/dev/null || { echo "build: Go is not installed (need Go >= 1.24: https://go.dev/dl/)" >&2; exit 1; }
export GOWORK=off CGO_ENABLED=0 GOFLAGS="-buildvcs=false -modfile=$modfile"

k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$modfile")
[[ $k8s_version =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { echo "build: cannot read k8s.io/kubernetes version from $modfile" >&2; exit 1; }
[[ $k8s_version == v$version.* ]] || { echo "build: $modfile pins $k8s_version, not $version" >&2; exit 1; }
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
binaries=(kube-apiserver etcd kube-controller-manager)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"

# What goes into the binaries: the Go version, the module files, the commands and the flags.
stamp=$( { go version; echo "$ldflags"; cat "$modfile" "$sumfile"; find cmd -name '*.go' -print0 | sort -z | xargs -0 cat; } \
         | sha256sum | cut -d' ' -f1)
all_built() { local b; for b in "${binaries[@]}"; do [[ -x $dest/$b ]] || return 1; done; }
if [[ -f $dest/.stamp && $(cat "$dest/.stamp") == "$stamp" ]] && all_built; then
  echo "control plane $k8s_version is up to date in $dest"
  exit 0
fi
rm -f "$dest/.stamp"

echo "building kube-apiserver, etcd and kube-controller-manager $k8s_version into $dest"
echo "(the first build of a version downloads ~150 modules and compiles ~2,500 packages: 5-20 minutes)"

# Each progress line is flushed at once, so it shows when the output goes to a pipe or a log file too.
# 1. Modules: `go mod download -x` prints one "# get" line per request; show a count every 100.
echo "[1/3] downloading modules (cached ones are skipped)"
go mod download -x 2>&1 | awk '
  /^# get .*: 200 OK/ { n++; if (n % 100 == 0) { printf "      %d files fetched\n", n; fflush() } next }
  /^# get / { next }
  { print }
  END { printf "      %d files fetched\n", n }'

# 2. Compile: `go build -v` prints each package it compiles (not the cached ones); count them.
total=$(go list -deps ./cmd/... | wc -l)
echo "[2/3] compiling (up to $total packages; cached ones are skipped), then linking three binaries (1-3 minutes)"
go build -v -trimpath -o "$dest/" -ldflags "$ldflags" ./cmd/... 2>&1 | awk -v total="$total" '
  /^[A-Za-z0-9._~\/-]+$/ { n++; if (n % 100 == 0) { printf "      %d/%d packages compiled\n", n, total; fflush() }
                           next }
  { print }
  END { printf "      %d packages compiled\n", n }'

echo "[3/3] checking"
for b in "${binaries[@]}"; do [[ -x $dest/$b ]] || { echo "build: $dest/$b was not built" >&2; exit 1; }; done
echo "$stamp" > "$dest/.stamp"
"$dest/kube-apiserver" --version
echo "control plane $k8s_version built into $dest"
