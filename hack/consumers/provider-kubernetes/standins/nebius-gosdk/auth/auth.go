// Package auth stands in for github.com/nebius/gosdk/auth: the types provider-kubernetes
// v1.3.1 uses, nothing that authenticates.
package auth

import (
	"context"
	"errors"
	"time"
)

// BearerToken is an IAM token.
type BearerToken struct {
	Token     string
	ExpiresAt time.Time
}

// ServiceAccount is never produced.
type ServiceAccount struct{}

// ServiceAccountReader reads a service account's key.
type ServiceAccountReader interface {
	ReadServiceAccount(context.Context) (ServiceAccount, error)
}

// PrivateKeyParser fails to read any key.
type PrivateKeyParser struct{}

// NewPrivateKeyParser returns a reader that always fails.
func NewPrivateKeyParser(_ []byte, _, _ string) *PrivateKeyParser { return &PrivateKeyParser{} }

// ReadServiceAccount always fails.
func (*PrivateKeyParser) ReadServiceAccount(context.Context) (ServiceAccount, error) {
	return ServiceAccount{}, errors.New("Nebius identities are not supported in this build (stand-in for github.com/nebius/gosdk)")
}
