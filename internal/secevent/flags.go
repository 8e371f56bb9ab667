package secevent

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Flags are the command-line settings of security events, bound by Bind.
type Flags struct {
	Receiver, Issuer, Audience, KeySecret, TokenSecret string
	// MaxAge is how long a SET kept in the outbox (the identity's status) is sent again before
	// it is given up.
	MaxAge time.Duration
}

// DefaultMaxAge is --security-events-max-age's default.
const DefaultMaxAge = 24 * time.Hour

// Bind registers --security-events-receiver, -issuer, -audience, -key-secret and
// -token-secret and -max-age on fs.
func (f *Flags) Bind(fs *flag.FlagSet) {
	fs.StringVar(&f.Receiver, "security-events-receiver", "",
		"Push endpoint (RFC 8935) to send signed Security Event Tokens to when accounts are disabled or purged; "+
			"empty sends none. https, or http to a loopback address.")
	fs.StringVar(&f.Issuer, "security-events-issuer", "", "iss of the Security Event Tokens: a URI naming this operator.")
	fs.StringVar(&f.Audience, "security-events-audience", "", "aud of the Security Event Tokens: the receiver's identifier.")
	fs.StringVar(&f.KeySecret, "security-events-key-secret", "",
		"Secret ([namespace/]name; default namespace: the cluster resource namespace) holding the PEM signing key "+
			"in tls.key or key.pem (RSA ≥ 2048 bits, ECDSA P-256 or P-384) and optionally its kid.")
	fs.StringVar(&f.TokenSecret, "security-events-token-secret", "",
		"Secret ([namespace/]name) holding the receiver's bearer token in token; empty sends none.")
	fs.DurationVar(&f.MaxAge, "security-events-max-age", DefaultMaxAge,
		"How long a Security Event Token not accepted by the receiver is sent again (it is kept on the identity's "+
			"status, across restarts, and holds a deleted identity with the scim.nhi.dev/security-events finalizer) "+
			"before it is given up with a Warning Event.")
}

// Config turns the flags into a validated Config; secret references without a namespace are in
// defaultNamespace. Without --security-events-receiver it returns a disabled Config and no
// error, unless another security-events flag is set (a half configuration is refused).
func (f *Flags) Config(defaultNamespace string) (Config, error) {
	if f.Receiver == "" {
		if f.Issuer != "" || f.Audience != "" || f.KeySecret != "" || f.TokenSecret != "" {
			return Config{}, errors.New("--security-events-* flags are set without --security-events-receiver")
		}
		return Config{}, nil
	}
	key, err := ParseSecretRef(f.KeySecret, defaultNamespace)
	if err != nil {
		return Config{}, fmt.Errorf("--security-events-key-secret: %w", err)
	}
	token, err := ParseSecretRef(f.TokenSecret, defaultNamespace)
	if err != nil {
		return Config{}, fmt.Errorf("--security-events-token-secret: %w", err)
	}
	c := Config{ReceiverURL: f.Receiver, Issuer: f.Issuer, Audience: f.Audience, KeySecret: key, TokenSecret: token}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
