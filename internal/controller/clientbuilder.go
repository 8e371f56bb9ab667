package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

// ClientBuilder gives reconcilers a SCIM client for a target. It is injected so tests can
// substitute one.
type ClientBuilder interface {
	ForTarget(ctx context.Context, t *Target) (*scim.Client, error)
}

// CredentialsError says the target's credentials could not be read. It never holds a secret value.
type CredentialsError struct{ Msg string }

func (e *CredentialsError) Error() string { return e.Msg }

// SecretClientBuilder reads credentials from Secrets in the target's secret namespace.
type SecretClientBuilder struct {
	Reader client.Reader
	// HTTPClient is shared by every target so connections are reused.
	HTTPClient *http.Client
	// Timeout bounds each SCIM call.
	Timeout time.Duration
}

// NewSecretClientBuilder returns a builder with a shared, connection-reusing HTTP client.
func NewSecretClientBuilder(reader client.Reader, timeout time.Duration) *SecretClientBuilder {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &SecretClientBuilder{Reader: reader, HTTPClient: &http.Client{Transport: tr}, Timeout: timeout}
}

// ForTarget implements ClientBuilder.
func (b *SecretClientBuilder) ForTarget(ctx context.Context, t *Target) (*scim.Client, error) {
	auth, err := b.authenticator(ctx, t)
	if err != nil {
		return nil, err
	}
	return scim.New(t.Spec.Endpoint, scim.Options{HTTPClient: b.HTTPClient, Auth: auth, Timeout: b.Timeout, Observer: observeRequest(t.Key())})
}

func (b *SecretClientBuilder) authenticator(ctx context.Context, t *Target) (scim.Authenticator, error) {
	a := t.Spec.Auth
	switch {
	case a.BearerToken != nil:
		tok, err := b.secretKey(ctx, t, a.BearerToken.SecretKeyRef.Name, a.BearerToken.SecretKeyRef.Key)
		if err != nil {
			return nil, err
		}
		return scim.BearerToken(tok), nil
	case a.Basic != nil:
		user, err := b.secretKey(ctx, t, a.Basic.SecretRef.Name, "username")
		if err != nil {
			return nil, err
		}
		pass, err := b.secretKey(ctx, t, a.Basic.SecretRef.Name, "password")
		if err != nil {
			return nil, err
		}
		return scim.BasicAuth{Username: user, Password: pass}, nil
	case a.OAuth2ClientCredentials != nil:
		return nil, &CredentialsError{Msg: "auth.oauth2ClientCredentials is not supported by this version of the operator"}
	}
	return nil, &CredentialsError{Msg: "auth sets no method"}
}

func (b *SecretClientBuilder) secretKey(ctx context.Context, t *Target, name, key string) (string, error) {
	s := &corev1.Secret{}
	if err := b.Reader.Get(ctx, types.NamespacedName{Namespace: t.SecretNamespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &CredentialsError{Msg: fmt.Sprintf("secret %s/%s not found", t.SecretNamespace, name)}
		}
		return "", fmt.Errorf("reading secret %s/%s: %w", t.SecretNamespace, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return "", &CredentialsError{Msg: fmt.Sprintf("secret %s/%s has no key %q", t.SecretNamespace, name, key)}
	}
	return string(v), nil
}

func isCredentialsError(err error) bool {
	var ce *CredentialsError
	return errors.As(err, &ce)
}
