#!/usr/bin/env bash
# Build prometheus and promtool from the pinned Prometheus Go module (go.mod) into bin/.
# The tests use promtool to check and unit-test deploy/'s alerting rules (tests/deploy/test_alerts.py).
# Static (CGO_ENABLED=0), version stamped like upstream's release builds. Skipped when nothing that goes
# into the build changed since the last one (bin/.stamp).
set -euo pipefail
cd "$(dirname "$0")"

command -v go >/dev/null || { echo "build.sh: Go is not installed (need Go >= 1.24)" >&2; exit 1; }

module_version=$(awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/prometheus/prometheus") { print $(i + 1); exit } }' go.mod)
# Module v0.308.1 is Prometheus 3.8.1.
[[ $module_version =~ ^v0\.([0-9]+)([0-9]{2})\.([0-9]+)$ ]] || { echo "build.sh: cannot read the prometheus version from go.mod" >&2; exit 1; }
version="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"
binaries=(prometheus promtool)

stamp=$( { go version; cat go.mod go.sum build.sh tools.go; } | sha256sum | cut -d' ' -f1)
all_built() { local b; for b in "${binaries[@]}"; do [[ -x bin/$b ]] || return 1; done; }
if [[ -f bin/.stamp && $(cat bin/.stamp) == "$stamp" ]] && all_built; then
  echo "prometheus $version is up to date in tools/prometheus/bin"
  exit 0
fi

echo "building prometheus and promtool $version (first build: several minutes)"
mkdir -p bin
rm -f bin/.stamp
pkg=github.com/prometheus/common/version
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o bin/ \
  -ldflags "-s -w -X $pkg.Version=$version -X $pkg.Branch=release -X $pkg.BuildUser=shard-operator -X $pkg.BuildDate=19700101-00:00:00" \
  github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
echo "$stamp" > bin/.stamp
bin/promtool --version | head -1
