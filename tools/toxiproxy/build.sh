#!/usr/bin/env bash
# Build toxiproxy's server from the pinned Go module (github.com/Shopify/toxiproxy/v2, cmd/server) into
# bin/toxiproxy-server, for the load lab's network faults (loadtest/toxiproxy.py). Never a prebuilt binary.
# Skipped when nothing that goes into the build changed since the last one (bin/.stamp).
set -euo pipefail
cd "$(dirname "$0")"

command -v go >/dev/null || { echo "build.sh: Go is not installed (need Go >= 1.24)" >&2; exit 1; }

stamp=$( { go version; cat go.mod go.sum build.sh; } | sha256sum | cut -d' ' -f1)
if [[ -f bin/.stamp && $(cat bin/.stamp) == "$stamp" && -x bin/toxiproxy-server ]]; then
  echo "toxiproxy is up to date in tools/toxiproxy/bin"
  exit 0
fi

version=$(awk '$1 == "github.com/Shopify/toxiproxy/v2" {print $2; exit}' go.mod)
echo "building toxiproxy-server $version"
mkdir -p bin
rm -f bin/.stamp
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o bin/toxiproxy-server \
  github.com/Shopify/toxiproxy/v2/cmd/server
echo "$stamp" > bin/.stamp
echo "built tools/toxiproxy/bin/toxiproxy-server"
