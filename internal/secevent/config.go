package secevent

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys read from the Secrets a Config names.
const (
	// SecretKeyPrivateKey is the PEM private key (a kubernetes.io/tls Secret's key, so a
	// cert-manager Certificate can issue and rotate it); SecretKeyPrivateKeyAlt is tried next.
	SecretKeyPrivateKey    = corev1.TLSPrivateKeyKey // "tls.key"
	SecretKeyPrivateKeyAlt = "key.pem"
	// SecretKeyKeyID optionally sets the kid; without it the kid is the key's RFC 7638 thumbprint.
	SecretKeyKeyID = "kid"
	// SecretKeyToken is the receiver's bearer token in the token Secret.
	SecretKeyToken = "token"
)

// Config is how the operator sends security events. Empty ReceiverURL: it sends none.
type Config struct {
	// ReceiverURL is the push endpoint (https, or http to loopback).
	ReceiverURL string
	// Issuer is the iss claim: a URI naming this operator (e.g. https://<cluster>/scim-operator).
	Issuer string
	// Audience is the aud claim: the receiver's identifier.
	Audience string
	// KeySecret holds the signing key (SecretKeyPrivateKey, optional SecretKeyKeyID).
	KeySecret types.NamespacedName
	// TokenSecret, when its Name is set, holds the receiver's bearer token (SecretKeyToken).
	TokenSecret types.NamespacedName
}

// Enabled reports whether security events are configured.
func (c Config) Enabled() bool { return c.ReceiverURL != "" }

// Validate checks the configuration without reading any Secret.
func (c Config) Validate() error {
	var errs []error
	if _, err := ValidateReceiverURL(c.ReceiverURL); err != nil {
		errs = append(errs, err)
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	} else if strings.Contains(c.Issuer, ":") {
		// StringOrURI (RFC 7519): a value with a colon must be a URI.
		if u, err := url.Parse(c.Issuer); err != nil || u.Scheme == "" {
			errs = append(errs, errors.New("issuer contains ':' but is not a URI"))
		}
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if c.KeySecret.Name == "" || c.KeySecret.Namespace == "" {
		errs = append(errs, errors.New("key secret (namespace/name) is required"))
	}
	if c.TokenSecret.Name != "" && c.TokenSecret.Namespace == "" {
		errs = append(errs, errors.New("token secret needs a namespace"))
	}
	return errors.Join(errs...)
}

// ParseSecretRef reads "namespace/name", or "name" in defaultNamespace; "" is the zero value.
func ParseSecretRef(s, defaultNamespace string) (types.NamespacedName, error) {
	if s == "" {
		return types.NamespacedName{}, nil
	}
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = defaultNamespace, s
	}
	for _, part := range []string{ns, name} {
		if msgs := validation.IsDNS1123Subdomain(part); len(msgs) > 0 {
			return types.NamespacedName{}, fmt.Errorf("secret reference %q: %s", s, strings.Join(msgs, "; "))
		}
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// LoadSigner reads the signing key from the Secret ref. Errors name the Secret and key, never
// their content.
func LoadSigner(ctx context.Context, r client.Reader, ref types.NamespacedName) (*Signer, error) {
	var s corev1.Secret
	if err := r.Get(ctx, ref, &s); err != nil {
		return nil, fmt.Errorf("reading security event key Secret %s: %w", ref, err)
	}
	return SignerFromSecret(&s)
}

// SignerFromSecret makes the signer of a key Secret: the PEM key in tls.key or key.pem, the key
// id in kid (optional). Errors name the Secret and key, never their content.
func SignerFromSecret(s *corev1.Secret) (*Signer, error) {
	ref := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	data, ok := s.Data[SecretKeyPrivateKey]
	if !ok {
		data, ok = s.Data[SecretKeyPrivateKeyAlt]
	}
	if !ok {
		return nil, fmt.Errorf("security event key Secret %s has neither %q nor %q", ref, SecretKeyPrivateKey, SecretKeyPrivateKeyAlt)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("security event key Secret %s: %w", ref, err)
	}
	signer, err := NewSigner(key, strings.TrimSpace(string(s.Data[SecretKeyKeyID])))
	if err != nil {
		return nil, fmt.Errorf("security event key Secret %s: %w", ref, err)
	}
	return signer, nil
}

// LoadToken reads the receiver's bearer token from the Secret ref ("" when ref is unset).
func LoadToken(ctx context.Context, r client.Reader, ref types.NamespacedName) (string, error) {
	if ref.Name == "" {
		return "", nil
	}
	var s corev1.Secret
	if err := r.Get(ctx, ref, &s); err != nil {
		return "", fmt.Errorf("reading security event token Secret %s: %w", ref, err)
	}
	tok := strings.TrimSpace(string(s.Data[SecretKeyToken]))
	if tok == "" {
		return "", fmt.Errorf("security event token Secret %s has no %q", ref, SecretKeyToken)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("security event token Secret %s: %q holds more than one line", ref, SecretKeyToken)
	}
	return tok, nil
}

// Load validates cfg, reads its Secrets through r (at startup, the manager's API reader: its
// cache has not started) and returns a publisher. Keys and tokens are read once: rotating them
// takes a restart.
func Load(ctx context.Context, r client.Reader, cfg Config, topts TransmitterOptions, popts PublisherOptions) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("security events: %w", err)
	}
	signer, err := LoadSigner(ctx, r, cfg.KeySecret)
	if err != nil {
		return nil, err
	}
	if topts.Token, err = LoadToken(ctx, r, cfg.TokenSecret); err != nil {
		return nil, err
	}
	tx, err := NewTransmitter(cfg.ReceiverURL, topts)
	if err != nil {
		return nil, err
	}
	return NewPublisher(cfg.Issuer, cfg.Audience, signer, tx, popts)
}
