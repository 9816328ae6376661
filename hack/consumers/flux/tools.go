//go:build tools

// Package tools pins the controllers this module builds (see targets).
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
