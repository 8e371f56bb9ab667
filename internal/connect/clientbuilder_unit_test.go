package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Unit tests of the transport wiring: the address guard of namespaced targets, the OAuth2
// token fetch's deadline, redirects and the per-target slots.

func TestAddressGuard(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		addr    string
		allowed []netip.Prefix
		denied  []netip.Prefix // nil: the defaults
		want    bool
	}{
		{addr: "93.184.216.34", want: true},
		{addr: "2606:2800:220:1:248:1893:25c8:1946", want: true},
		{addr: "127.0.0.1", want: false},
		{addr: "127.0.0.2", want: false},
		{addr: "::1", want: false},
		{addr: "::ffff:127.0.0.1", want: false}, // IPv4-mapped loopback
		{addr: "169.254.169.254", want: false},  // cloud metadata
		{addr: "fe80::1", want: false},
		{addr: "0.0.0.0", want: false},
		{addr: "0.1.2.3", want: false},
		{addr: "::", want: false},
		{addr: "224.0.0.1", want: false},
		{addr: "ff02::1", want: false},
		{addr: "255.255.255.255", want: false},
		{addr: "10.0.0.1", want: false},
		{addr: "172.20.1.1", want: false},
		{addr: "192.168.1.1", want: false},
		{addr: "100.64.0.10", want: false},
		{addr: "fd12::1", want: false},
		{addr: "::ffff:10.0.0.1", want: false},
		{addr: "64:ff9b::a9fe:a9fe", want: false}, // NAT64 of 169.254.169.254
		{addr: "64:ff9b::5db8:d822", want: true},  // NAT64 of a public address
		{addr: "172.32.0.1", want: true},          // just outside 172.16/12
		// Cluster, benchmarking, reserved and transition ranges (the provider review's list).
		{addr: "240.1.2.3", want: false},
		{addr: "198.18.0.1", want: false},
		{addr: "192.0.0.8", want: false},
		{addr: "fec0::1", want: false},
		{addr: "64:ff9b:1::a00:1", want: false},    // local-use NAT64
		{addr: "::a9fe:a9fe", want: false},         // IPv4-compatible 169.254.169.254
		{addr: "2002:a9fe:a9fe::1", want: false},   // 6to4
		{addr: "2001:0:4136:e378::1", want: false}, // Teredo
		// The allowance lifts exactly what it names.
		{addr: "127.0.0.1", allowed: loopback, want: true},
		{addr: "::ffff:127.0.0.1", allowed: loopback, want: true},
		{addr: "127.0.0.2", allowed: loopback, want: false},
		{addr: "10.1.2.3", allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, want: true},
		{addr: "10.2.0.1", allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, want: false},
		// An empty denied list keeps refusing loopback and link-local.
		{addr: "10.0.0.1", denied: []netip.Prefix{}, want: true},
		{addr: "169.254.169.254", denied: []netip.Prefix{}, want: false},
		{addr: "127.0.0.1", denied: []netip.Prefix{}, want: false},
	}
	for _, tt := range tests {
		g := NewAddressGuard(tt.allowed, tt.denied)
		if got := g.Allows(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Allows(%s) with allowed %v denied %v = %t, want %t", tt.addr, tt.allowed, tt.denied, got, tt.want)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs(" 127.0.0.1/32, 10.1.2.3/16 ,::1,")
	if err != nil || FormatCIDRs(got) != "127.0.0.1/32,10.1.0.0/16,::1/128" {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := ParseCIDRs(""); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty: got %#v, %v", got, err)
	}
	if _, err := ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Fatal("an invalid CIDR was accepted")
	}
	// An IPv4-mapped prefix means its IPv4 range (addresses are judged unmapped).
	if got, err := ParseCIDRs("::ffff:10.0.0.0/104"); err != nil || FormatCIDRs(got) != "10.0.0.0/8" {
		t.Fatalf("mapped: got %v, %v", got, err)
	}
	if g := NewAddressGuard(nil, mustCIDRs(t, "::ffff:10.0.0.0/104")); g.Allows(netip.MustParseAddr("10.1.2.3")) {
		t.Fatal("a mapped deny flag had no effect")
	}
	if back, _ := ParseCIDRs(FormatCIDRs(DefaultDeniedCIDRs)); FormatCIDRs(back) != FormatCIDRs(DefaultDeniedCIDRs) {
		t.Fatal("the default does not round-trip through the flag")
	}
}

func mustCIDRs(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A name that does not resolve reads like a refused address: no resolver address, no hint
// that some internal name exists.
func TestGuardedDNSFailureRevealsNothing(t *testing.T) {
	_, err := guardedRoundTripper{base: NewAddressGuard(nil, nil).transport()}.RoundTrip(
		httptestRequest(t, "http://no-such-host.invalid/scim/v2/Users"))
	if !errors.Is(err, ErrAddressNotAllowed) || err.Error() != ErrAddressNotAllowed.Error() {
		t.Fatalf("want exactly ErrAddressNotAllowed, got %v", err)
	}
}

func httptestRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// listener counts the connections it accepts (an HTTP server that got nothing got no dial).
type listener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func serveOn(t *testing.T, addr string, h http.Handler) (*httptest.Server, *listener) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	l := &listener{Listener: ln}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, l
}

func secretsReader(objs ...*corev1.Secret) *fake.ClientBuilder {
	b := fake.NewClientBuilder()
	for _, o := range objs {
		b = b.WithObjects(o)
	}
	return b
}

func bearerTargetView(kind, endpoint string) (*targets.Target, *corev1.Secret) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "tok"}, Data: map[string][]byte{"token": []byte("s3cret-token")}}
	t := &targets.Target{Kind: kind, Name: "t", Namespace: "tenant", SecretNamespace: "tenant", Status: &scimv1.ScimTargetStatus{},
		Spec: &scimv1.ScimTargetSpec{Endpoint: endpoint, AllowInsecureHTTP: true,
			Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "tok", Key: "token"}}}}}
	if kind == scimv1.KindClusterScimTarget {
		t.Namespace = ""
	}
	return t, s
}

func oauthTarget(kind, endpoint, tokenURL string) (*targets.Target, *corev1.Secret) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "oauth"},
		Data: map[string][]byte{"id": []byte("client-id"), "secret": []byte("client-s3cret")}}
	t := &targets.Target{Kind: kind, Name: "o", Namespace: "tenant", SecretNamespace: "tenant", Status: &scimv1.ScimTargetStatus{},
		Spec: &scimv1.ScimTargetSpec{Endpoint: endpoint, AllowInsecureHTTP: true,
			Auth: scimv1.Auth{OAuth2ClientCredentials: &scimv1.OAuth2ClientCredentials{TokenURL: tokenURL,
				ClientIDSecretKeyRef:     scimv1.SecretKeySelector{Name: "oauth", Key: "id"},
				ClientSecretSecretKeyRef: scimv1.SecretKeySelector{Name: "oauth", Key: "secret"}}}}}
	if kind == scimv1.KindClusterScimTarget {
		t.Namespace = ""
	}
	return t, s
}

func scimOK(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, `{"id":"u1","userName":"x"}`)
}

func checkNoLeak(t *testing.T, msg string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("the message reveals %q: %s", s, msg)
		}
	}
}

func TestNamespacedTargetsAreGuardedAfterResolution(t *testing.T) {
	ctx := context.Background()
	srv, ln := serveOn(t, "127.0.0.1:0", http.HandlerFunc(scimOK))
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	// "localhost" is a name: only the address it resolves to can be judged.
	endpoint := fmt.Sprintf("http://localhost:%d/scim/v2", port)

	tgt, sec := bearerTargetView(scimv1.KindScimTarget, endpoint)
	b := NewSecretClientBuilder(secretsReader(sec).Build(), time.Second)
	c, err := b.ForTarget(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, "Users", "u1")
	if !errors.Is(err, ErrAddressNotAllowed) {
		t.Fatalf("want ErrAddressNotAllowed, got %v", err)
	}
	checkNoLeak(t, err.Error(), "127.0.0.1", "::1", fmt.Sprint(port), "connection refused", "dial")
	if ln.accepted.Load() != 0 {
		t.Fatalf("the guarded target reached the server (%d connections)", ln.accepted.Load())
	}

	// The same URL on a ClusterScimTarget (a cluster admin's) is not guarded.
	ctgt, csec := bearerTargetView(scimv1.KindClusterScimTarget, endpoint)
	b2 := NewSecretClientBuilder(secretsReader(csec).Build(), time.Second)
	c2, _ := b2.ForTarget(ctx, ctgt)
	if _, err := c2.Get(ctx, "Users", "u1"); err != nil {
		t.Fatalf("ClusterScimTarget: %v", err)
	}

	// An explicit allowance lets the namespaced target through.
	b3 := NewSecretClientBuilder(secretsReader(sec).Build(), time.Second)
	b3.Guard = NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}, nil)
	c3, _ := b3.ForTarget(ctx, tgt)
	if _, err := c3.Get(ctx, "Users", "u1"); err != nil {
		t.Fatalf("with the allowance: %v", err)
	}
}

func TestGuardedTransportIgnoresProxies(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	b := NewSecretClientBuilder(nil, time.Second)
	b.setup()
	rt := b.guarded.Transport.(guardedRoundTripper).base.(*http.Transport)
	if rt.Proxy != nil {
		t.Fatal("the guarded transport uses a proxy")
	}
	for name, hc := range map[string]*http.Client{"open": b.open, "guarded": b.guarded} {
		if hc.Timeout <= 0 || hc.CheckRedirect == nil {
			t.Errorf("%s client: Timeout %s, CheckRedirect set %t; want a backstop and no redirects", name, hc.Timeout, hc.CheckRedirect != nil)
		}
	}
}

func TestOAuth2TokenURLIsGuarded(t *testing.T) {
	ctx := context.Background()
	scimSrv, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(scimOK))
	tokens, ln := serveOn(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"tok","token_type":"bearer","expires_in":3600}`)
	}))
	tgt, sec := oauthTarget(scimv1.KindScimTarget, scimSrv.URL+"/scim/v2", tokens.URL+"/token")
	b := NewSecretClientBuilder(secretsReader(sec).Build(), time.Second)
	b.Guard = NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
	c, err := b.ForTarget(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, "Users", "u1")
	if !errors.Is(err, ErrAddressNotAllowed) {
		t.Fatalf("want ErrAddressNotAllowed, got %v", err)
	}
	checkNoLeak(t, err.Error(), "127.0.0.2", fmt.Sprint(tokens.Listener.Addr().(*net.TCPAddr).Port), "client-s3cret")
	if ln.accepted.Load() != 0 {
		t.Fatalf("the token endpoint was reached (%d connections)", ln.accepted.Load())
	}
}

func TestOAuth2TokenFetchHasTheCallsDeadline(t *testing.T) {
	ctx := context.Background()
	scimSrv, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(scimOK))
	release := make(chan struct{})
	var fetches atomic.Int32
	tokens, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		select { // never answers while the test runs
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	tgt, sec := oauthTarget(scimv1.KindScimTarget, scimSrv.URL+"/scim/v2", tokens.URL+"/token")
	const timeout = time.Second
	b := NewSecretClientBuilder(secretsReader(sec).Build(), timeout)
	b.Guard = NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
	b.SlotsPerTarget = 16
	c, err := b.ForTarget(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	const callers = 8
	errs := make(chan error, callers)
	began := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() { _, err := c.Get(ctx, "Users", "u1"); errs <- err })
	}
	wg.Wait()
	close(errs)
	if took := time.Since(began); took > 3*timeout {
		t.Errorf("the calls took %s; a hanging token endpoint must fail them within the SCIM timeout (%s)", took, timeout)
	}
	for err := range errs {
		var ce *CredentialsError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("want a CredentialsError that says it timed out, got %v", err)
		}
		checkNoLeak(t, err.Error(), "client-s3cret", "client-id")
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("the token endpoint got %d requests; concurrent callers must share one fetch", n)
	}
}

func TestOAuth2TokenEndpointRedirectsAreNotFollowed(t *testing.T) {
	ctx := context.Background()
	scimSrv, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(scimOK))
	internal, iln := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"tok","token_type":"bearer","expires_in":3600}`)
	}))
	tokens, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/token", http.StatusTemporaryRedirect)
	}))
	for _, kind := range []string{scimv1.KindScimTarget, scimv1.KindClusterScimTarget} {
		tgt, sec := oauthTarget(kind, scimSrv.URL+"/scim/v2", tokens.URL+"/token")
		b := NewSecretClientBuilder(secretsReader(sec).Build(), time.Second)
		b.Guard = NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
		c, _ := b.ForTarget(ctx, tgt)
		_, err := c.Get(ctx, "Users", "u1")
		var ce *CredentialsError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "307") {
			t.Fatalf("%s: want a CredentialsError naming the 307, got %v", kind, err)
		}
		checkNoLeak(t, err.Error(), strings.TrimPrefix(internal.URL, "http://"), "client-s3cret")
	}
	if iln.accepted.Load() != 0 {
		t.Fatal("the redirect was followed to the internal server")
	}
}

func TestTargetSlotsAreSharedAmongItsClients(t *testing.T) {
	ctx := context.Background()
	hold := make(chan struct{})
	in := make(chan struct{}, 4)
	srv, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		scimOK(w, r)
	}))
	tgt, sec := bearerTargetView(scimv1.KindScimTarget, srv.URL+"/scim/v2")
	b := NewSecretClientBuilder(secretsReader(sec).Build(), 10*time.Second)
	b.Guard = NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
	b.SlotsPerTarget = 2
	var wg sync.WaitGroup
	for range 2 {
		c, _ := b.ForTarget(ctx, tgt) // a client per reconcile, as the controllers do
		wg.Go(func() { _, _ = c.Get(ctx, "Users", "u1") })
	}
	<-in
	<-in
	c, _ := b.ForTarget(ctx, tgt)
	_, err := c.Get(ctx, "Users", "u1")
	if !errors.Is(err, scim.ErrTargetBusy) {
		t.Fatalf("want ErrTargetBusy with both slots held, got %v", err)
	}
	// Transient, with no Retry-After: the work queue's exponential backoff spaces the attempts
	// (TestClassify in internal/controller).
	close(hold)
	wg.Wait()
}

// A token endpoint's reason phrase is the server's text: bounded and sanitised in the error.
func TestTokenErrorStatusLineIsSanitised(t *testing.T) {
	reason := "418 " + strings.Repeat("\x1b[2J\u202e", 1000)
	err := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 418, Status: reason}, ErrorCode: "invalid_client"}
	a := &oauth2Auth{cfg: &clientcredentials.Config{TokenURL: "https://login.example.com/token"}}
	msg := a.describe(err, nil).Error()
	if len(msg) > 200 || strings.ContainsAny(msg, "\x1b\u202e") {
		t.Fatalf("unbounded or unsanitised: %d bytes %q", len(msg), msg)
	}
}
