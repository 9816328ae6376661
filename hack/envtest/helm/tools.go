//go:build tools

// Package tools pins the helm binary the chart tests build from this module.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
