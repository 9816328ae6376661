// Package token stands in for github.com/Azure/kubelogin/pkg/token, which the Go module
// proxy does not serve. It has only the symbols provider-kubernetes v1.3.1 uses, and
// GetTokenProvider fails: only a ProviderConfig with an Azure identity reaches it.
package token

import (
	"context"
	"errors"
	"time"
)

// Login methods provider-kubernetes selects.
const (
	ServicePrincipalLogin = "spn"
	WorkloadIdentityLogin = "workloadidentity"
)

// Options are kubelogin's token options (the fields provider-kubernetes sets).
type Options struct {
	LoginMethod        string
	ClientID           string
	ClientSecret       string
	ClientCert         string
	ClientCertPassword string
	TenantID           string
	ServerID           string
	FederatedTokenFile string
	AuthorityHost      string
}

// AccessToken is an Entra ID access token.
type AccessToken struct {
	Token     string
	ExpiresOn time.Time
}

// TokenProvider gets access tokens.
type TokenProvider interface {
	GetAccessToken(ctx context.Context) (AccessToken, error)
}

// GetTokenProvider always fails.
func GetTokenProvider(*Options) (TokenProvider, error) {
	return nil, errors.New("Azure identities are not supported in this build (stand-in for github.com/Azure/kubelogin)")
}
