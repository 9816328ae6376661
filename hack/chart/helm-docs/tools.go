//go:build tools

// Package tools pins helm-docs (see targets), which renders charts/moonlander/README.md from
// the chart's values.yaml and README.md.gotmpl (make chart-docs; a test checks for drift).
package tools

import _ "github.com/norwoodj/helm-docs/cmd/helm-docs"
