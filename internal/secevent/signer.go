package secevent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// MediaType is the SET's JWS typ header (RFC 8417 section 2.3) and, with "application/"
// before it, the Content-Type of a pushed SET (RFC 8935 section 2).
const MediaType = "secevent+jwt"

// MinRSABits is the smallest RSA key accepted for signing.
const MinRSABits = 2048

// ErrNoPrivateKey reports PEM data without a private key block this package can use.
var ErrNoPrivateKey = errors.New("no PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC) found")

// Signer signs SETs with one private key: RSA (RS256) or ECDSA P-256 (ES256) or P-384 (ES384).
type Signer struct {
	signer jose.Signer
	alg    jose.SignatureAlgorithm
	kid    string
	public jose.JSONWebKey
	key    crypto.Signer
}

// ParsePrivateKeyPEM reads the first private key block of PEM data (a kubernetes.io/tls
// Secret's tls.key, for instance). Other blocks, such as certificates, are skipped. Errors never
// quote the data.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, ErrNoPrivateKey
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the PEM private key is encrypted; store it unencrypted in the Secret")
		default:
			continue
		}
		if err != nil {
			// The parser's message names the ASN.1 structure, never the key's bytes.
			return nil, fmt.Errorf("parsing the PEM %s block: %w", block.Type, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return s, nil
	}
}

// NewSigner returns a signer for key. kid is the JWS key id; empty derives it from the public
// key: its RFC 7638 JWK thumbprint (SHA-256, base64url), which a receiver can compute too.
func NewSigner(key crypto.Signer, kid string) (*Signer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small (at least %d)", k.N.BitLen(), MinRSABits)
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return nil, fmt.Errorf("ECDSA curve %s is not supported (P-256, P-384)", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("unsupported signing key type %T (RSA or ECDSA P-256/P-384)", key)
	}
	public := jose.JSONWebKey{Key: key.Public(), Algorithm: string(alg), Use: "sig"}
	if kid == "" {
		tp, err := public.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("computing the key's thumbprint: %w", err)
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	public.KeyID = kid
	opts := (&jose.SignerOptions{}).WithType(MediaType)
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the JWS signer: %w", err)
	}
	return &Signer{signer: js, alg: alg, kid: kid, public: public, key: key}, nil
}

// KeyID is the kid header of every SET this signer signs.
func (s *Signer) KeyID() string { return s.kid }

// Algorithm is the JWS alg: RS256, ES256 or ES384.
func (s *Signer) Algorithm() string { return string(s.alg) }

// PublicJWKS is the verification key as a JWK Set (RFC 7517), for receivers: publish it or
// hand it to them.
func (s *Signer) PublicJWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{s.public}}
}

// WithKeyID is a signer of the same key under another kid.
func (s *Signer) WithKeyID(kid string) (*Signer, error) { return NewSigner(s.key, kid) }

// Thumbprint is the key's RFC 7638 thumbprint (SHA-256, base64url).
func (s *Signer) Thumbprint() string {
	tp, err := s.public.Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// PublicKey is the verification key as a JWK.
func (s *Signer) PublicKey() jose.JSONWebKey { return s.public }

// Sign returns the SET as a compact JWS.
func (s *Signer) Sign(c Claims) (string, error) { return s.SignClaims(c) }

// SignClaims returns a SET with any claims (a Shared Signals stream's, whose events and aud
// Claims does not hold) as a compact JWS.
func (s *Signer) SignClaims(c any) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding the SET claims: %w", err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing the SET: %w", err)
	}
	return jws.CompactSerialize()
}
