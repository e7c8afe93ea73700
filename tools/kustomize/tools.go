//go:build tools

// Package tools pins the kustomize module whose command build.sh builds (tests render deploy/ overlays).
package tools

import (
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
