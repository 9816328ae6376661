//go:build tools

// Package tools pins Kueue v0.17.0, whose manager the MultiKueue e2e (tests/e2e/test_kueue.py)
// runs out of cluster, and the cluster-inventory-api version Kueue v0.17.0 requires, whose
// secretreader credential plugin resolves the ClusterProfiles Moonlander writes.
package tools

import (
	_ "sigs.k8s.io/cluster-inventory-api/cmd/secretreader-plugin"
	_ "sigs.k8s.io/kueue/cmd/kueue"
)
