// Package connect builds the SCIM clients the controllers use: credentials read from Secrets
// (never cached, snapshotted for deletion), OAuth2, the address guard that keeps namespaced
// targets off private ranges, and the per-target and per-tenant request slots.
package connect

import (
	"context"

	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// ClientBuilder gives reconcilers a SCIM client for a target. It is injected so tests can
// substitute one.
type ClientBuilder interface {
	ForTarget(ctx context.Context, t *targets.Target) (*scim.Client, error)
}

// CredentialsError says the target's credentials could not be read or used. It never holds a
// secret value.
type CredentialsError struct{ Msg string }

func (e *CredentialsError) Error() string { return e.Msg }

// SecretClientBuilder reads credentials from Secrets in the target's secret namespace. Per
// target it keeps the HTTP client (connection pool, TLS settings), the OAuth2 token cache, the
// rate limiter and the request slots, and rebuilds them when the spec or a Secret's data
// changed.
//
// The operator does not watch Secrets (its RBAC grants get only): it gets a target's Secrets
// again when they were read longer than Recheck ago, and at once (at most once a second per
// target) when the target answers 401 or 403, retrying the request once if they changed.
//
// Every call has a deadline: the SCIM client's per-call Timeout, which the OAuth2 token fetch
// shares (it runs on the request's context), and an http.Client Timeout behind it. No client
// follows redirects. A namespaced ScimTarget, whose URLs a tenant chose, dials through Guard
// and never through a proxy; a ClusterScimTarget, made by a cluster admin, is not guarded.
type SecretClientBuilder struct {
	// Reader gets Secrets from the API server, when Credentials is nil.
	Reader client.Reader
	// Credentials gets the Secrets from the API server and serves a target being deleted from
	// its snapshot.
	Credentials *CredentialStore
	// Recheck is how long the credentials read from a target's Secrets are used before they
	// are read again (DefaultCredentialRecheck when zero): a rotation is picked up within it,
	// or at the first 401 or 403 the old credentials get.
	Recheck time.Duration
	// Timeout bounds each SCIM call (scim.DefaultTimeout when zero).
	Timeout time.Duration
	// Guard judges the addresses namespaced ScimTargets dial (endpoint and OAuth2 token URL);
	// nil means NewAddressGuard(nil, nil). Set it before the first ForTarget.
	Guard *AddressGuard
	// Metrics records every SCIM request (nil: not recorded).
	Metrics *metrics.Metrics
	// Modes, when set, is read (the manager's cache) before each write a client sends: a target
	// switched to Observe since the client was made refuses it.
	Modes client.Reader
	// SlotsPerTarget bounds the requests in flight to one target (scim.Slots, which keeps a
	// quarter more for revocations), so a target that hangs holds a bounded share of the
	// workers; <= 0 means 2. Set it before the first ForTarget.
	SlotsPerTarget int

	init    sync.Once
	open    *http.Client // ClusterScimTargets without TLS customisation
	guarded *http.Client // namespaced ScimTargets without TLS customisation
	mu      sync.Mutex
	conns   map[string]*targetConn
	// tenants holds, per namespace, the request slots all its ScimTargets share: a tenant's
	// targets that hang hold at most that many workers, however many targets it makes.
	tenants map[string]*scim.Slots
	// reads gathers the concurrent reads of one target's Secrets into one.
	reads singleflight.Group
}

// DefaultCredentialRecheck is how long credentials read from Secrets are used, by default,
// before they are read again.
const DefaultCredentialRecheck = time.Minute

// reloadGap is the least time between two reads of a target's Secrets that its 401s and 403s
// cause: a provider that refuses every request cannot make the operator get a Secret per
// request.
const reloadGap = time.Second

type targetConn struct {
	fingerprint string
	http        *http.Client
	auth        scim.Authenticator
	limiter     *scim.Limiter
	slots       *scim.Slots

	// spec is the part of the spec the connection was built from.
	spec string
	// version identifies the spec and the Secrets' data the connection was built from.
	version string
	// readAt is when the Secrets were last read.
	readAt time.Time
}

// NewSecretClientBuilder returns a builder with shared, connection-reusing HTTP clients for
// targets without TLS customisation.
func NewSecretClientBuilder(reader client.Reader, timeout time.Duration) *SecretClientBuilder {
	return &SecretClientBuilder{Reader: reader, Timeout: timeout, conns: map[string]*targetConn{}}
}

func newTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	// A provider's headers are bounded too (Go's default allows 10 MiB).
	tr.MaxResponseHeaderBytes = 64 << 10
	return tr
}

// noRedirects makes an http.Client hand back 3xx answers instead of following them.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (b *SecretClientBuilder) setup() {
	b.init.Do(func() {
		if b.Guard == nil {
			b.Guard = NewAddressGuard(nil, nil)
		}
		b.open = b.httpClient(newTransport(), false)
		b.guarded = b.httpClient(b.Guard.transport(), true)
	})
}

// httpClient wraps a transport in a client that never follows redirects and whose Timeout is a
// backstop behind the per-call deadline (twice the SCIM timeout, so the call's own deadline,
// with its clearer error, normally fires first).
func (b *SecretClientBuilder) httpClient(tr *http.Transport, guarded bool) *http.Client {
	var rt http.RoundTripper = tr
	if guarded {
		rt = guardedRoundTripper{base: tr}
	}
	return &http.Client{Transport: rt, CheckRedirect: noRedirects, Timeout: 2 * b.timeout()}
}

func (b *SecretClientBuilder) timeout() time.Duration {
	if b.Timeout > 0 {
		return b.Timeout
	}
	return scim.DefaultTimeout
}

func (b *SecretClientBuilder) recheck() time.Duration {
	if b.Recheck > 0 {
		return b.Recheck
	}
	return DefaultCredentialRecheck
}

// ForTarget implements ClientBuilder.
func (b *SecretClientBuilder) ForTarget(ctx context.Context, t *targets.Target) (*scim.Client, error) {
	conn, err := b.conn(ctx, t, b.recheck())
	if err != nil {
		return nil, err
	}
	caps := t.Status.Capabilities
	return scim.New(t.Spec.Endpoint, scim.Options{
		HTTPClient: conn.http, Auth: &secretAuth{b: b, t: t, conn: conn}, Limiter: conn.limiter, Timeout: b.Timeout, Slots: conn.slots,
		TenantSlots:       b.tenantSlots(t),
		Observer:          b.Metrics.Observer(t.Key()),
		FilterUnsupported: caps != nil && caps.Filter != nil && !*caps.Filter,
		ReadOnly:          t.Spec.Mode == scimv1.ModeObserve,
		ReadOnlyNow:       b.observing(t),
	})
}

// observing reads t's mode from Modes at each write: true when the target is in Observe mode
// now, or cannot be read (a write is refused rather than risked).
func (b *SecretClientBuilder) observing(t *targets.Target) func() bool {
	if b.Modes == nil {
		return nil
	}
	kind, key := t.Kind, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}
	return func() bool {
		var mode scimv1.TargetMode
		var err error
		if kind == scimv1.KindClusterScimTarget {
			obj := &scimv1.ClusterScimTarget{}
			err, mode = b.Modes.Get(context.Background(), key, obj), obj.Spec.Mode
		} else {
			obj := &scimv1.ScimTarget{}
			err, mode = b.Modes.Get(context.Background(), key, obj), obj.Spec.Mode
		}
		if apierrors.IsNotFound(err) {
			return false // a target being deleted (served from its snapshot) keeps its last mode
		}
		return err != nil || mode == scimv1.ModeObserve
	}
}

// tenantSlots are the request slots shared by every ScimTarget of t's namespace (nil for a
// ClusterScimTarget, which the cluster admin runs): as many as one target has.
func (b *SecretClientBuilder) tenantSlots(t *targets.Target) *scim.Slots {
	if t.ClusterScoped() {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tenants == nil {
		b.tenants = map[string]*scim.Slots{}
	}
	s := b.tenants[t.Namespace]
	if s == nil {
		s = scim.NewSlots(b.slotsPerTarget(), scim.DefaultSlotWait)
		b.tenants[t.Namespace] = s
	}
	return s
}

// CredentialsVersion identifies the spec and the Secrets' data a client of t is built from,
// reading the Secrets again when they were read longer than Recheck ago.
func (b *SecretClientBuilder) CredentialsVersion(ctx context.Context, t *targets.Target) (string, error) {
	conn, err := b.conn(ctx, t, b.recheck())
	if err != nil {
		return "", err
	}
	return conn.version, nil
}

// conn returns t's connection, built anew when the spec changed, and when its Secrets, read
// again because they were read longer than maxAge ago, hold other data.
func (b *SecretClientBuilder) conn(ctx context.Context, t *targets.Target, maxAge time.Duration) (*targetConn, error) {
	specJSON, _ := json.Marshal([]any{t.Spec.Endpoint, t.Spec.Auth, t.Spec.TLS, t.Spec.RateLimit})
	spec := string(specJSON)
	b.setup()
	b.mu.Lock()
	conn := b.conns[t.Key()]
	b.mu.Unlock()
	if conn != nil && conn.spec == spec && time.Since(conn.readAt) < maxAge {
		return conn, nil
	}
	v, err, _ := b.reads.Do(t.Key()+"\x00"+spec, func() (any, error) { return b.read(ctx, t, spec) })
	if err != nil {
		return nil, err
	}
	return v.(*targetConn), nil
}

// read gets t's Secrets and keeps the connection they build (the one kept, when their data
// did not change, so that connections and cached tokens survive).
func (b *SecretClientBuilder) read(ctx context.Context, t *targets.Target, spec string) (*targetConn, error) {
	store := b.Credentials
	if store == nil {
		store = &CredentialStore{Reader: b.Reader}
	}
	readAt := time.Now()
	secrets, err := store.Read(ctx, t)
	if err != nil {
		return nil, err
	}
	var hashes []string
	for _, name := range secretNames(t.Spec) {
		hashes = append(hashes, name+"="+dataHash(secrets[name]))
	}
	fingerprint := spec + strings.Join(hashes, ",")
	b.mu.Lock()
	prev := b.conns[t.Key()]
	b.mu.Unlock()
	var conn *targetConn
	if prev == nil || prev.fingerprint != fingerprint {
		if conn, err = b.connect(t, secrets); err != nil {
			return nil, err
		}
		if prev != nil {
			// The calls still in flight on the old connection keep counting against the target.
			conn.slots = prev.slots
		}
		conn.fingerprint = fingerprint
		sum := sha256.Sum256([]byte(fingerprint))
		conn.version = hex.EncodeToString(sum[:8])
	} else {
		c := *prev
		conn = &c
	}
	conn.spec, conn.readAt = spec, readAt
	b.mu.Lock()
	b.conns[t.Key()] = conn
	b.mu.Unlock()
	return conn, nil
}

// secretAuth authenticates with the credentials of the connection its client was built on.
// On a 401 or 403 it gets the target's Secrets again (at most once per reloadGap for the
// target) and has the request retried when they changed; else, on a 401, it refreshes an
// OAuth2 token (scim.Refresher).
type secretAuth struct {
	b    *SecretClientBuilder
	t    *targets.Target
	mu   sync.Mutex
	conn *targetConn
}

func (a *secretAuth) current() *targetConn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

// Authenticate implements scim.Authenticator.
func (a *secretAuth) Authenticate(req *http.Request) error { return a.current().auth.Authenticate(req) }

// Reload implements scim.Reloader.
func (a *secretAuth) Reload(ctx context.Context, status int) bool {
	old := a.current()
	if conn, err := a.b.conn(ctx, a.t, reloadGap); err == nil && conn.fingerprint != old.fingerprint {
		a.mu.Lock()
		a.conn = conn
		a.mu.Unlock()
		return true
	}
	if rf, ok := old.auth.(scim.Refresher); ok && status == http.StatusUnauthorized {
		rf.Invalidate()
		return true
	}
	return false
}

// Forget drops what is kept for a target (it was deleted).
func (b *SecretClientBuilder) Forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, key)
}

func (b *SecretClientBuilder) connect(t *targets.Target, secrets map[string]*corev1.Secret) (*targetConn, error) {
	guarded := !t.ClusterScoped()
	slots := b.slotsPerTarget()
	conn := &targetConn{http: b.open, slots: scim.NewSlots(slots, scim.DefaultSlotWait)}
	if guarded {
		conn.http = b.guarded
	}
	if rl := t.Spec.RateLimit; rl != nil {
		conn.limiter = scim.NewLimiter(rate.Limit(rl.RequestsPerSecond), int(max(rl.Burst, 1)))
	}
	tlsCfg, err := tlsConfig(t, secrets)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		tr := newTransport()
		if guarded {
			tr = b.Guard.transport()
		}
		tr.TLSClientConfig = tlsCfg
		conn.http = b.httpClient(tr, guarded)
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
func tlsConfig(t *targets.Target, secrets map[string]*corev1.Secret) (*tls.Config, error) {
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
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		_, _ = fmt.Fprintf(h, "%s=%x;", k, s.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func key(t *targets.Target, secrets map[string]*corev1.Secret, name, k string) (string, error) {
	v, ok := secrets[name].Data[k]
	if !ok || len(v) == 0 {
		return "", &CredentialsError{Msg: fmt.Sprintf("secret %s/%s has no key %q", t.SecretNamespace, name, k)}
	}
	return string(v), nil
}

func IsCredentialsError(err error) bool {
	var ce *CredentialsError
	return errors.As(err, &ce)
}

// oauth2Auth sends a client-credentials access token, cached until it expires; a 401 from the
// SCIM endpoint invalidates it (scim.Refresher) so the next request fetches a new one.
//
// The fetch runs on the SCIM request's context, so it has the call's deadline: a token
// endpoint that never answers fails the call within the SCIM timeout instead of holding the
// worker forever. Concurrent callers share one fetch, each waiting at most until its own
// deadline.
type oauth2Auth struct {
	cfg *clientcredentials.Config
	// http reaches the token endpoint: the target's transport (its TLS settings and, for a
	// namespaced target, the address guard), without redirects, with a Timeout.
	http    *http.Client
	fetches singleflight.Group
	mu      sync.Mutex
	tok     *oauth2.Token
}

func newOAuth2Auth(cfg *clientcredentials.Config, hc *http.Client) *oauth2Auth {
	return &oauth2Auth{cfg: cfg, http: hc}
}

// Authenticate implements scim.Authenticator.
func (a *oauth2Auth) Authenticate(req *http.Request) error {
	tok, err := a.token(req.Context())
	if err != nil {
		return err
	}
	tok.SetAuthHeader(req)
	return nil
}

// Invalidate implements scim.Refresher.
func (a *oauth2Auth) Invalidate() {
	a.mu.Lock()
	a.tok = nil
	a.mu.Unlock()
}

func (a *oauth2Auth) token(ctx context.Context) (*oauth2.Token, error) {
	a.mu.Lock()
	tok := a.tok
	a.mu.Unlock()
	if tok.Valid() {
		return tok, nil
	}
	ch := a.fetches.DoChan("token", func() (any, error) { return a.fetch(ctx) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*oauth2.Token), nil
	case <-ctx.Done():
		// Joined a fetch started by a caller with a later deadline.
		return nil, a.describe(ctx.Err(), nil)
	}
}

// fetch asks the token endpoint for a token within ctx and caches it.
func (a *oauth2Auth) fetch(ctx context.Context) (*oauth2.Token, error) {
	// The oauth2 package formats some transport errors with %v; keep the transport's own error
	// to tell a refused address apart.
	var transportErr error
	hc := &http.Client{Timeout: a.http.Timeout, CheckRedirect: noRedirects,
		Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := a.http.Transport.RoundTrip(r)
			if err != nil {
				transportErr = err
			}
			return resp, err
		})}
	tok, err := a.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, a.describe(err, transportErr)
	}
	a.mu.Lock()
	a.tok = tok
	a.mu.Unlock()
	return tok, nil
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// describe turns a failed fetch into an error that keeps the token endpoint's status and
// error code but never a body (it might echo credentials), and never, for a refused address,
// what the dial found.
func (a *oauth2Auth) describe(err, transportErr error) error {
	if errors.Is(transportErr, ErrAddressNotAllowed) || errors.Is(err, ErrAddressNotAllowed) {
		return fmt.Errorf("OAuth2 token URL: %w", ErrAddressNotAllowed)
	}
	what := "obtaining an OAuth2 token from " + redactURL(a.cfg.TokenURL) + ": "
	var re *oauth2.RetrieveError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &CredentialsError{Msg: what + "the token endpoint timed out (no answer within the SCIM timeout)"}
	case errors.Is(err, context.Canceled):
		return &CredentialsError{Msg: what + "canceled"}
	case errors.As(err, &re):
		msg := "token endpoint answered"
		if re.Response != nil {
			msg += " " + scim.Sanitize(re.Response.Status, 64) // the reason phrase is the server's
		}
		if re.ErrorCode != "" {
			msg += " (" + scim.Sanitize(re.ErrorCode, 64) + ")"
		}
		return &CredentialsError{Msg: what + msg}
	case transportErr != nil:
		cause := transportErr
		var ue *url.Error
		if errors.As(cause, &ue) {
			cause = ue.Err
		}
		return &CredentialsError{Msg: what + "token endpoint unreachable: " + scim.Sanitize(cause.Error(), 256)}
	}
	return &CredentialsError{Msg: what + "token request failed"}
}

// redactURL shows scheme, host and path: no credentials, no query.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return scim.Sanitize((&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(), 256)
}

func (b *SecretClientBuilder) slotsPerTarget() int {
	if b.SlotsPerTarget > 0 {
		return b.SlotsPerTarget
	}
	return 2
}
