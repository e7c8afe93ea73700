//go:build tools

// Package tools pins the Prometheus module whose prometheus and promtool commands build.sh builds.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
