// Package gosdk stands in for github.com/nebius/gosdk, which the Go module proxy does not
// serve. It has only the symbols provider-kubernetes v1.3.1 uses, and every call fails:
// only a ProviderConfig with a Nebius identity reaches it.
package gosdk

import (
	"context"
	"errors"

	"github.com/nebius/gosdk/auth"
)

// ErrUnsupported is what every call returns.
var ErrUnsupported = errors.New("Nebius identities are not supported in this build (stand-in for github.com/nebius/gosdk)")

// SDK is never constructed.
type SDK struct{}

// Option configures New.
type Option interface{ option() }

// Credentials are what WithCredentials takes.
type Credentials interface{ credentials() }

type credentialsOption struct{ Credentials }

func (credentialsOption) option() {}

type serviceAccountReader struct{ auth.ServiceAccountReader }

func (serviceAccountReader) credentials() {}

// WithCredentials is an Option carrying creds.
func WithCredentials(creds Credentials) Option { return credentialsOption{creds} }

// ServiceAccountReader makes Credentials of a service account.
func ServiceAccountReader(reader auth.ServiceAccountReader) Credentials {
	return serviceAccountReader{reader}
}

// New always fails.
func New(_ context.Context, _ ...Option) (*SDK, error) { return nil, ErrUnsupported }

// BearerToken always fails.
func (*SDK) BearerToken(context.Context) (auth.BearerToken, error) {
	return auth.BearerToken{}, ErrUnsupported
}
