//go:build tools

// Package tools pins provider-kubernetes, the Crossplane provider the e2e tests run against
// the Secrets and ProviderConfigs Moonlander lands (tests/e2e/test_crossplane_provider.py).
package tools

import (
	_ "github.com/crossplane-contrib/provider-kubernetes/cmd/provider"
)
