//go:build tools

// Package tools pins Crossplane core v2, which the Crossplane demo (moonlander-dev demo
// --crossplane) runs against the Secrets and ProviderConfigs Moonlander lands in harvey.
package tools

import (
	_ "github.com/crossplane/crossplane/v2/cmd/crossplane"
)
