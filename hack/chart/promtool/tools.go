//go:build tools

// Package tools pins promtool (see targets), which tests/e2e/test_chart_operations.py runs
// as `promtool test rules` on the chart's PrometheusRule. Built by ../build.sh.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
