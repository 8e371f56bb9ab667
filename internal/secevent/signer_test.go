package secevent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Keys are generated once per test binary: RSA generation is slow on two cores.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	p256Key  *ecdsa.PrivateKey
)

func testKeys(t *testing.T) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if p256Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return rsaKey, p256Key
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func TestParsePrivateKeyPEM(t *testing.T) {
	rk, ek := testKeys(t)
	sec1, err := x509.MarshalECPrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(ek.Public())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		want    crypto.PublicKey
		wantErr string
	}{
		{"PKCS #8 RSA", pkcs8(t, rk), rk.Public(), ""},
		{"PKCS #1 RSA", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), rk.Public(), ""},
		{"SEC 1 EC", pemBlock("EC PRIVATE KEY", sec1), ek.Public(), ""},
		{"PKCS #8 EC after a certificate block", append(pemBlock("CERTIFICATE", []byte{1, 2, 3}), pkcs8(t, ek)...), ek.Public(), ""},
		{"public key only", pemBlock("PUBLIC KEY", pub), nil, "no PEM private key"},
		{"not PEM", []byte("-----BEGIN nothing"), nil, "no PEM private key"},
		{"encrypted", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1}), nil, "encrypted"},
		{"corrupt DER", pemBlock("PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01}), nil, "parsing the PEM PRIVATE KEY block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivateKeyPEM(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if eq, ok := got.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(tt.want) {
				t.Error("parsed a different key")
			}
		})
	}
}

func TestNewSignerAlgorithms(t *testing.T) {
	rk, ek := testKeys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		key     crypto.Signer
		wantAlg string
		wantErr string
	}{
		{"RSA 2048", rk, "RS256", ""},
		{"P-256", ek, "ES256", ""},
		{"P-384", p384, "ES384", ""},
		{"P-521", p521, "", "not supported"},
		{"RSA 1024", small, "", "too small"},
		{"Ed25519", ed, "", "unsupported signing key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.key, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Algorithm() != tt.wantAlg {
				t.Errorf("alg %s, want %s", s.Algorithm(), tt.wantAlg)
			}
		})
	}
}

// b64 is base64url without padding, as JWK members are written.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestKeyIDIsTheRFC7638Thumbprint computes the thumbprint by hand: SHA-256 of the required
// members in lexicographic order, no whitespace (RFC 7638 section 3).
func TestKeyIDIsTheRFC7638Thumbprint(t *testing.T) {
	rk, ek := testKeys(t)
	coord := func(n *big.Int) string { return b64(n.FillBytes(make([]byte, 32))) }
	tests := []struct {
		name      string
		key       crypto.Signer
		canonical string
	}{
		{"RSA", rk, `{"e":"` + b64(big.NewInt(int64(rk.E)).Bytes()) + `","kty":"RSA","n":"` + b64(rk.N.Bytes()) + `"}`},
		{"EC", ek, `{"crv":"P-256","kty":"EC","x":"` + coord(ek.X) + `","y":"` + coord(ek.Y) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.key, "")
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(tt.canonical))
			if want := b64(sum[:]); s.KeyID() != want {
				t.Errorf("kid %s, want %s", s.KeyID(), want)
			}
			named, err := NewSigner(tt.key, "2026-11")
			if err != nil {
				t.Fatal(err)
			}
			if named.KeyID() != "2026-11" {
				t.Errorf("kid %s, want the one given", named.KeyID())
			}
		})
	}
}

func TestSignedSETVerifiesWithThePublicJWKS(t *testing.T) {
	rk, ek := testKeys(t)
	for _, key := range []crypto.Signer{rk, ek} {
		s, err := NewSigner(key, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClaims("https://op.example/", "rcv", Event{Type: AccountPurged, Subject: Opaque("x")}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		token, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(s.Algorithm())})
		if err != nil {
			t.Fatal(err)
		}
		h := jws.Signatures[0].Protected
		if h.ExtraHeaders[jose.HeaderType] != "secevent+jwt" || h.KeyID != s.KeyID() || h.Algorithm != s.Algorithm() {
			t.Errorf("header typ=%v kid=%s alg=%s", h.ExtraHeaders[jose.HeaderType], h.KeyID, h.Algorithm)
		}
		jwks := s.PublicJWKS()
		keys := jwks.Key(s.KeyID())
		if len(keys) != 1 || !keys[0].IsPublic() {
			t.Fatalf("JWKS has %d keys for the kid (public: %v)", len(keys), len(keys) == 1 && keys[0].IsPublic())
		}
		payload, err := jws.Verify(keys[0])
		if err != nil {
			t.Fatalf("SET does not verify with the published key: %v", err)
		}
		var got Claims
		if err := json.Unmarshal(payload, &got); err != nil {
			t.Fatal(err)
		}
		if got.ID != c.ID || got.Issuer != c.Issuer {
			t.Errorf("payload jti=%s iss=%s", got.ID, got.Issuer)
		}
		// The JWKS never carries the private part.
		raw, _ := json.Marshal(jwks)
		if strings.Contains(string(raw), `"d"`) {
			t.Errorf("JWKS carries a private member: %s", raw)
		}
	}
}
