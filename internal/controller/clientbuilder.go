package controller

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

// ClientBuilder gives reconcilers a SCIM client for a target. It is injected so tests can
// substitute one.
type ClientBuilder interface {
	ForTarget(ctx context.Context, t *Target) (*scim.Client, error)
}

// CredentialsError says the target's credentials could not be read or used. It never holds a
// secret value.
type CredentialsError struct{ Msg string }

func (e *CredentialsError) Error() string { return e.Msg }

// SecretClientBuilder reads credentials from Secrets in the target's secret namespace. Per
// target it keeps the HTTP client (connection pool, TLS settings), the OAuth2 token cache and
// the rate limiter, and rebuilds them when the spec or a Secret changes.
type SecretClientBuilder struct {
	// Reader reads Secrets from the API server, when Credentials is nil.
	Reader client.Reader
	// Credentials reads the Secrets (from the API server, again only when their cached
	// metadata changed) and serves a target being deleted from its snapshot.
	Credentials *CredentialStore
	// Timeout bounds each SCIM call.
	Timeout time.Duration

	shared *http.Client
	mu     sync.Mutex
	conns  map[string]*targetConn
}

type targetConn struct {
	fingerprint string
	http        *http.Client
	auth        scim.Authenticator
	limiter     *rate.Limiter

	// versions are the spec and the Secrets' resourceVersions the connection was built from.
	versions string
}

// NewSecretClientBuilder returns a builder with a shared, connection-reusing HTTP client for
// targets without TLS customisation.
func NewSecretClientBuilder(reader client.Reader, timeout time.Duration) *SecretClientBuilder {
	return &SecretClientBuilder{Reader: reader, Timeout: timeout, shared: &http.Client{Transport: newTransport()},
		conns: map[string]*targetConn{}}
}

func newTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return tr
}

// ForTarget implements ClientBuilder.
func (b *SecretClientBuilder) ForTarget(ctx context.Context, t *Target) (*scim.Client, error) {
	spec, _ := json.Marshal([]any{t.Spec.Endpoint, t.Spec.Auth, t.Spec.TLS, t.Spec.RateLimit})
	store := b.Credentials
	if store == nil {
		store = &CredentialStore{Reader: b.Reader}
	}
	b.mu.Lock()
	conn := b.conns[t.Key()]
	b.mu.Unlock()
	// The Secrets are read only when their cached metadata says they changed.
	if cached, ok := store.Versions(ctx, t); !ok || conn == nil || conn.versions != string(spec)+cached {
		secrets, read, err := store.Read(ctx, t)
		if err != nil {
			return nil, err
		}
		var hashes []string
		for _, name := range secretNames(t.Spec) {
			hashes = append(hashes, name+"="+dataHash(secrets[name]))
		}
		fingerprint := string(spec) + strings.Join(hashes, ",")
		if conn == nil || conn.fingerprint != fingerprint {
			if conn, err = b.connect(t, secrets); err != nil {
				return nil, err
			}
			conn.fingerprint = fingerprint
		} else {
			c := *conn
			conn = &c
		}
		conn.versions = string(spec) + read
		b.mu.Lock()
		b.conns[t.Key()] = conn
		b.mu.Unlock()
	}
	caps := t.Status.Capabilities
	return scim.New(t.Spec.Endpoint, scim.Options{
		HTTPClient: conn.http, Auth: conn.auth, Limiter: conn.limiter, Timeout: b.Timeout,
		Observer:          observeRequest(t.Key()),
		FilterUnsupported: caps != nil && caps.Filter != nil && !*caps.Filter,
	})
}

// Forget drops what is kept for a target (it was deleted).
func (b *SecretClientBuilder) Forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, key)
}

func (b *SecretClientBuilder) connect(t *Target, secrets map[string]*corev1.Secret) (*targetConn, error) {
	conn := &targetConn{http: b.shared}
	if rl := t.Spec.RateLimit; rl != nil {
		conn.limiter = rate.NewLimiter(rate.Limit(rl.RequestsPerSecond), int(max(rl.Burst, 1)))
	}
	tlsCfg, err := tlsConfig(t, secrets)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		tr := newTransport()
		tr.TLSClientConfig = tlsCfg
		conn.http = &http.Client{Transport: tr}
	}
	a := t.Spec.Auth
	switch {
	case a.BearerToken != nil:
		tok, err := key(t, secrets, a.BearerToken.SecretKeyRef.Name, a.BearerToken.SecretKeyRef.Key)
		if err != nil {
			return nil, err
		}
		conn.auth = scim.BearerToken(tok)
	case a.Basic != nil:
		user, err := key(t, secrets, a.Basic.SecretRef.Name, "username")
		if err != nil {
			return nil, err
		}
		pass, err := key(t, secrets, a.Basic.SecretRef.Name, "password")
		if err != nil {
			return nil, err
		}
		conn.auth = scim.BasicAuth{Username: user, Password: pass}
	case a.OAuth2ClientCredentials != nil:
		o := a.OAuth2ClientCredentials
		id, err := key(t, secrets, o.ClientIDSecretKeyRef.Name, o.ClientIDSecretKeyRef.Key)
		if err != nil {
			return nil, err
		}
		secret, err := key(t, secrets, o.ClientSecretSecretKeyRef.Name, o.ClientSecretSecretKeyRef.Key)
		if err != nil {
			return nil, err
		}
		cfg := &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: o.TokenURL, Scopes: o.Scopes}
		conn.auth = newOAuth2Auth(cfg, conn.http)
	default:
		return nil, &CredentialsError{Msg: "auth sets no method"}
	}
	return conn, nil
}

// tlsConfig builds the TLS settings of spec.tls and auth.tls; nil when there are none.
func tlsConfig(t *Target, secrets map[string]*corev1.Secret) (*tls.Config, error) {
	var cfg *tls.Config
	if s := t.Spec.TLS; s != nil && (s.CABundleSecretRef != nil || s.InsecureSkipVerify) {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.InsecureSkipVerify} //nolint:gosec // opt-in, with a Warning event
		if ref := s.CABundleSecretRef; ref != nil {
			pem, err := key(t, secrets, ref.Name, ref.Key)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(pem)) {
				return nil, &CredentialsError{Msg: fmt.Sprintf("secret %s/%s key %q holds no PEM certificate", t.SecretNamespace, ref.Name, ref.Key)}
			}
			cfg.RootCAs = pool
		}
	}
	if a := t.Spec.Auth.TLS; a != nil {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		crt, err := key(t, secrets, a.ClientCertSecretRef.Name, corev1.TLSCertKey)
		if err != nil {
			return nil, err
		}
		pk, err := key(t, secrets, a.ClientCertSecretRef.Name, corev1.TLSPrivateKeyKey)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair([]byte(crt), []byte(pk))
		if err != nil {
			// The parser's message does not quote key material.
			return nil, &CredentialsError{Msg: fmt.Sprintf("secret %s/%s: client certificate: %v", t.SecretNamespace, a.ClientCertSecretRef.Name, err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// dataHash identifies a Secret's content; its resourceVersion also moves for metadata (labels,
// or the Secret read from the target's snapshot), which must not throw away connections and
// cached tokens.
func dataHash(s *corev1.Secret) string {
	h := sha256.New()
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		_, _ = fmt.Fprintf(h, "%s=%x;", k, s.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func key(t *Target, secrets map[string]*corev1.Secret, name, k string) (string, error) {
	v, ok := secrets[name].Data[k]
	if !ok || len(v) == 0 {
		return "", &CredentialsError{Msg: fmt.Sprintf("secret %s/%s has no key %q", t.SecretNamespace, name, k)}
	}
	return string(v), nil
}

func isCredentialsError(err error) bool {
	var ce *CredentialsError
	return errors.As(err, &ce)
}

// oauth2Auth sends a client-credentials access token, cached until it expires; a 401 from the
// SCIM endpoint invalidates it (scim.Refresher) so the next request fetches a new one.
type oauth2Auth struct {
	cfg  *clientcredentials.Config
	http *http.Client
	mu   sync.Mutex
	src  oauth2.TokenSource
}

func newOAuth2Auth(cfg *clientcredentials.Config, hc *http.Client) *oauth2Auth {
	a := &oauth2Auth{cfg: cfg, http: hc}
	a.Invalidate()
	return a
}

// Authenticate implements scim.Authenticator.
func (a *oauth2Auth) Authenticate(req *http.Request) error {
	a.mu.Lock()
	src := a.src
	a.mu.Unlock()
	tok, err := src.Token()
	if err != nil {
		return &CredentialsError{Msg: "obtaining an OAuth2 token from " + a.cfg.TokenURL + ": " + describeTokenError(err)}
	}
	tok.SetAuthHeader(req)
	return nil
}

// Invalidate implements scim.Refresher.
func (a *oauth2Auth) Invalidate() {
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, a.http)
	a.mu.Lock()
	a.src = oauth2.ReuseTokenSource(nil, a.cfg.TokenSource(ctx))
	a.mu.Unlock()
}

// describeTokenError keeps the token endpoint's status and error code, never a body that
// might echo credentials.
func describeTokenError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := "token endpoint answered"
		if re.Response != nil {
			msg += " " + re.Response.Status
		}
		if re.ErrorCode != "" {
			msg += " (" + re.ErrorCode + ")"
		}
		return msg
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		return "token endpoint unreachable: " + errors.Unwrap(err).Error()
	}
	return "token request failed"
}
