package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// hostileProvider is a working SCIM server (its own store, the suite's token) behind a hook
// that may answer a request itself (it returns true) the way a hostile provider would.
func hostileProvider(hook func(w http.ResponseWriter, r *http.Request) bool) (*httptest.Server, *scimserver.Server) {
	GinkgoHelper()
	backend, err := scimserver.New(testToken)
	Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hook == nil || !hook(w, r) {
			backend.ServeHTTP(w, r)
		}
	}))
	DeferCleanup(srv.Close)
	return srv, backend
}

// countingListener counts the connections accepted: a server that accepted none was never dialled.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// serveAt serves h on addr (host:port) and counts the connections it accepts.
func serveAt(addr string, h http.Handler) (*httptest.Server, *countingListener) {
	GinkgoHelper()
	ln, err := net.Listen("tcp", addr)
	Expect(err).NotTo(HaveOccurred())
	cl := &countingListener{Listener: ln}
	srv := &httptest.Server{Listener: cl, Config: &http.Server{Handler: h}}
	srv.Start()
	DeferCleanup(srv.Close)
	return srv, cl
}

// oauth2Target creates a ScimTarget on the suite's reference server authenticating with OAuth2
// client credentials at tokenURL.
func oauth2Target(ctx context.Context, ns, name, tokenURL string) *scimv1.ScimTarget {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-oauth"},
		StringData: map[string]string{"id": "operator", "secret": "client-s3cret"}})).To(Succeed())
	t := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: scimv1.ScimTargetSpec{
		Endpoint: endpoint(), AllowInsecureHTTP: true,
		Auth: scimv1.Auth{OAuth2ClientCredentials: &scimv1.OAuth2ClientCredentials{TokenURL: tokenURL,
			ClientIDSecretKeyRef:     scimv1.SecretKeySelector{Name: name + "-oauth", Key: "id"},
			ClientSecretSecretKeyRef: scimv1.SecretKeySelector{Name: name + "-oauth", Key: "secret"}}},
	}}
	Expect(k8s.Create(ctx, t)).To(Succeed())
	return t
}

// eventNotes returns the notes of the Events about an object.
func eventNotes(ctx context.Context, ns, regarding string) func(Gomega) []string {
	return eventsAbout(ctx, ns, regarding, func(e eventsv1.Event) string { return e.Note })
}

// BeCleanText matches text that is valid UTF-8, has no control characters and is at most max bytes.
func BeCleanText(max int) OmegaMatcher {
	return WithTransform(func(s string) string {
		switch {
		case len(s) > max:
			return fmt.Sprintf("%d bytes (more than %d)", len(s), max)
		case !utf8.ValidString(s):
			return "invalid UTF-8"
		case strings.ContainsFunc(s, unicode.IsControl):
			return "control characters"
		}
		return "clean"
	}, Equal("clean"))
}

var _ = Describe("Attacks by a hostile SCIM provider or its network position", func() {
	ctx := context.Background()

	It("a hanging OAuth2 token endpoint on one target does not stall revocation on another", func() {
		ns := readyTargetNamespace(ctx) // target B: "acme", the reference server
		// Target A belongs to another tenant: a namespace's targets share their request slots
		// by design (a tenant's hung calls hold a bounded share of the workers, its own).
		nsA := newNamespace(ctx)
		var hanging atomic.Bool
		var hung atomic.Int32
		release := make(chan struct{})
		tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hanging.Load() {
				hung.Add(1)
				select { // accepts the connection, never answers
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			// A token that expires at once: every SCIM call fetches a new one.
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":1}`, testToken)
		}))
		DeferCleanup(tokens.Close)
		DeferCleanup(func() { hanging.Store(false); close(release) }) // runs first: lets the hung fetches go

		a := oauth2Target(ctx, nsA, "hangs", tokens.URL+"/token")
		Eventually(get(ctx, a)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		const onA, onB = 8, 50 // more identities on A than either controller has workers
		var idsA, idsB []*scimv1.ServiceIdentity
		for i := range onA {
			si := newIdentity(nsA, fmt.Sprintf("on-hanging-%d", i), "hangs")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			idsA = append(idsA, si)
		}
		for i := range onB {
			si := newIdentity(ns, fmt.Sprintf("on-healthy-%d", i), "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			idsB = append(idsB, si)
		}
		for _, si := range append(append([]*scimv1.ServiceIdentity{}, idsA...), idsB...) {
			Eventually(get(ctx, si), "60s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}

		// A's token endpoint stops answering; A's identities are retired first, so their
		// revocations are in the workers when B's arrive.
		hanging.Store(true)
		for _, si := range idsA {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		Eventually(hung.Load).Should(BeNumerically(">=", 1))
		began := time.Now()
		for _, si := range idsB {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		// With the workers held by A (today: forever), B's accounts would stay.
		Eventually(func(g Gomega) {
			for _, si := range idsB {
				g.Expect(accountsWithExternalID(ns, si.Name)()).To(BeEmpty(), "account of %s", si.Name)
			}
		}, "10s", "50ms").Should(Succeed())
		GinkgoWriter.Printf("%d accounts on B revoked in %s while A's token endpoint hangs\n", onB, time.Since(began))
		for _, si := range idsB {
			Eventually(gone(ctx, si)).Should(BeTrue())
		}

		// Each of A's identities says the token fetch timed out: its own attempt did, or it found
		// A's slots held and says why (the last request to finish timed out).
		saidTimeout := map[string]bool{}
		Eventually(func(g Gomega) {
			for _, si := range idsA {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
				if c := condition(si, scimv1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse &&
					strings.Contains(c.Message, "token endpoint timed out") {
					saidTimeout[si.Name] = true
				}
			}
			g.Expect(saidTimeout).To(HaveLen(onA))
		}, "30s", "50ms").Should(Succeed())
		for _, si := range idsA {
			Expect(condition(si, scimv1.ConditionReady).Message).NotTo(ContainSubstring("client-s3cret"))
			Expect(accountsWithExternalID(nsA, si.Name)()).To(HaveLen(1), "A's accounts stay until A answers")
		}

		// The token endpoint answers again: A's identities are deprovisioned too.
		hanging.Store(false)
		for _, si := range idsA {
			Eventually(gone(ctx, si), "30s").Should(BeTrue())
			Expect(accountsWithExternalID(nsA, si.Name)()).To(BeEmpty())
		}
	})

	It("a redirect to an internal address is not followed", func() {
		ns := newNamespace(ctx)
		var internalHits atomic.Int32
		internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			internalHits.Add(1)
			w.Header().Set("Content-Type", "application/scim+json")
			_, _ = io.WriteString(w, `{"totalResults":0,"Resources":[],"patch":{"supported":true}}`)
		}))
		DeferCleanup(internal.Close)
		redirector, _ := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
			code := http.StatusFound
			if r.Method != http.MethodGet || strings.HasSuffix(r.URL.Path, "/Users") {
				code = http.StatusTemporaryRedirect // would re-send the body and the Authorization header
			}
			http.Redirect(w, r, internal.URL+r.URL.RequestURI(), code)
			return true
		})
		t := createTarget(ctx, ns, "redirecting", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = redirector.URL + scimserver.BasePath
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDiscoveryFailed))
		Expect(condition(t, scimv1.ConditionReady).Message).To(ContainSubstring("redirects are not followed"))

		si := newIdentity(ns, "redirected", "redirecting")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonRejected))
		internalAddr := strings.TrimPrefix(internal.URL, "http://")
		for _, c := range []*metav1.Condition{condition(t, scimv1.ConditionReady), condition(si, scimv1.ConditionReady)} {
			Expect(c.Message).To(ContainSubstring("redirects are not followed"))
			Expect(c.Message).NotTo(ContainSubstring(internalAddr), "the Location header is not quoted")
		}
		Consistently(internalHits.Load, "1s", "50ms").Should(BeZero(), "the internal server was reached")
	})

	It("a namespaced target cannot reach link-local or loopback addresses, and its status does not reveal them", func() {
		ns := newNamespace(ctx)
		// A working SCIM server on 127.0.0.2 (Linux routes all of 127/8 to loopback): reachable,
		// but the suite's allowance is 127.0.0.1/32 only.
		backend, err := scimserver.New(testToken)
		Expect(err).NotTo(HaveOccurred())
		hidden, hiddenLn := serveAt("127.0.0.2:0", backend)
		hiddenPort := strconv.Itoa(hidden.Listener.Addr().(*net.TCPAddr).Port)
		tokens, tokensLn := serveAt("127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":3600}`, testToken)
		}))
		tokensPort := strconv.Itoa(tokens.Listener.Addr().(*net.TCPAddr).Port)

		endpoints := map[string]string{
			"loopback":      hidden.URL + scimserver.BasePath,
			"ipv6-loopback": "http://[::1]:" + hiddenPort + scimserver.BasePath,
			"link-local":    "http://169.254.169.254" + scimserver.BasePath, // cloud metadata
		}
		var targets []*scimv1.ScimTarget
		for name, ep := range endpoints {
			targets = append(targets, createTarget(ctx, ns, name, testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = ep }))
		}
		// An allowed endpoint whose OAuth2 token URL is not.
		targets = append(targets, oauth2Target(ctx, ns, "token-url", tokens.URL+"/token"))

		si := newIdentity(ns, "scanner", "loopback")
		Expect(k8s.Create(ctx, si)).To(Succeed())

		// Messages may quote the URLs the tenant wrote; beyond those they must not say which
		// address was dialled, on which port, or what the dial or a TLS handshake found.
		revealing := []string{"127.0.0.2", "::1", "169.254", hiddenPort, tokensPort, "connection refused", "timeout", "dial", "tls:", "i/o"}
		ownURLs := []string{tokens.URL + "/token"}
		for _, ep := range endpoints {
			ownURLs = append(ownURLs, ep)
		}
		withoutOwnURLs := func(s string) string {
			for _, u := range ownURLs {
				s = strings.ReplaceAll(s, u, "<url>")
			}
			return s
		}
		for _, t := range targets {
			Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonAddressNotAllowed), t.Name)
			msg := withoutOwnURLs(condition(t, scimv1.ConditionReady).Message)
			Expect(msg).To(ContainSubstring(connect.ErrAddressNotAllowed.Error()))
			for _, r := range revealing {
				Expect(msg).NotTo(ContainSubstring(r), "target %s", t.Name)
			}
		}
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonAddressNotAllowed))
		Eventually(eventNotes(ctx, ns, "scanner")).ShouldNot(BeEmpty())
		for _, text := range append(eventNotes(ctx, ns, "scanner")(Default), condition(si, scimv1.ConditionReady).Message) {
			for _, r := range revealing {
				Expect(withoutOwnURLs(text)).NotTo(ContainSubstring(r))
			}
		}
		Expect(hiddenLn.accepted.Load()).To(BeZero(), "the SCIM server on 127.0.0.2 was dialled")
		Expect(tokensLn.accepted.Load()).To(BeZero(), "the token endpoint on 127.0.0.2 was dialled")
		Expect(backend.Users.Len()).To(BeZero())
	})

	It("a provider that pages forever or sends huge lists cannot exhaust memory", func() {
		ns := newNamespace(ctx)
		var hostile atomic.Bool
		hostile.Store(true)
		// Each provider ignores the filter of a lookup and answers GET /Users its own way.
		type provider struct {
			page     func(start int) []byte
			maxStart atomic.Int64 // the furthest startIndex asked for
		}
		user := func(i, pad int) string {
			return fmt.Sprintf(`{"id":"u%d","userName":"someone-%d%s","externalId":"elsewhere/%d"}`, i, i, strings.Repeat("x", pad), i)
		}
		listOf := func(start, n, pad, total int) []byte {
			var b strings.Builder
			fmt.Fprintf(&b, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":%d,"Resources":[`, total)
			for i := range n {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(user(start+i, pad))
			}
			b.WriteString("]}")
			return []byte(b.String())
		}
		providers := map[string]*provider{
			// One account per page and no end: the page cap (500) stops it.
			"forever": {page: func(start int) []byte { return listOf(start, 1, 0, 1_000_000_000) }},
			// 40 pages of about 1 MiB: more than the 32 MiB a list may take.
			"huge-pages": {page: func(start int) []byte { return listOf(start, 100, 10_000, 4000) }},
			// 60 pages of 1,000: more than the 50,000 resources a list may hold.
			"many-items": {page: func(start int) []byte { return listOf(start, 1000, 0, 60_000) }},
			// One answer of 5 MiB: more than the 4 MiB a response may be.
			"one-huge-answer": {page: func(start int) []byte { return listOf(start, 500, 10_000, 500) }},
		}
		var ids []*scimv1.ServiceIdentity
		for name, p := range providers {
			srv, _ := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
				if !hostile.Load() || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/Users") ||
					r.URL.Query().Get("filter") == "" { // the probe's unfiltered one-item list is served normally
					return false
				}
				start, _ := strconv.Atoi(r.URL.Query().Get("startIndex"))
				for {
					if old := p.maxStart.Load(); int64(start) <= old || p.maxStart.CompareAndSwap(old, int64(start)) {
						break
					}
				}
				w.Header().Set("Content-Type", "application/scim+json")
				_, _ = w.Write(p.page(start))
				return true
			})
			createTarget(ctx, ns, name, testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = srv.URL + scimserver.BasePath })
			si := newIdentity(ns, "on-"+name, name)
			Expect(k8s.Create(ctx, si)).To(Succeed())
			ids = append(ids, si)
		}
		for _, si := range ids {
			// A cap ends a paging provider after up to 500 round trips or 33 MiB; on a loaded
			// machine the call's SCIM deadline (2 s in this suite) may end it first. Either ending
			// is bounded, and the maxStart checks below fail if the caps are gone; the exact caps
			// are internal/scim's bounds_test.
			ended := ContainSubstring("SCIM response exceeds a limit")
			if si.Spec.TargetRefs[0].Name != "one-huge-answer" {
				ended = Or(ended, ContainSubstring("context deadline exceeded"))
			}
			Eventually(get(ctx, si), "30s").Should(WithTransform(func(si *scimv1.ServiceIdentity) string {
				if c := condition(si, scimv1.ConditionReady); c != nil {
					return c.Message
				}
				return ""
			}, ended), si.Name)
			Expect(si.Status.Targets).To(HaveLen(1))
			Expect(si.Status.Targets[0].ID).To(BeEmpty(), "nothing from a refused list is taken for an account")
		}
		Expect(providers["forever"].maxStart.Load()).To(BeNumerically("<=", 500), "pages read in one list")
		Expect(providers["huge-pages"].maxStart.Load()).To(BeNumerically("<=", 3301), "about 33 pages of 1 MiB")
		Expect(providers["many-items"].maxStart.Load()).To(BeNumerically("<=", 50_001))

		// The providers behave again: the identities provision, and go.
		hostile.Store(false)
		for _, si := range ids {
			update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "retry now" })
			Eventually(get(ctx, si), "30s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
		}
	})

	It("provider text in conditions is bounded and UTF-8 safe", func() {
		ns := newNamespace(ctx)
		// 100 KB of detail with invalid UTF-8, terminal escapes, NULs, line breaks and a
		// right-to-left override, sent raw (encoding/json would have cleaned it).
		chunk := "Bad value \xff\xfe\x00\x1b[2J\x1b]0;pwned\x07 \u202Eexe.txt\n"
		detail := strings.Repeat(chunk, 100_000/len(chunk))
		var body strings.Builder
		body.WriteString(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidValue","detail":"`)
		for i := 0; i < len(detail); i++ {
			if c := detail[i]; c < 0x20 {
				fmt.Fprintf(&body, `\u%04x`, c)
			} else {
				body.WriteByte(c)
			}
		}
		body.WriteString(`"}`)
		var once sync.Once
		var posts atomic.Int32
		srv, _ := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/Users") {
				return false
			}
			once.Do(func() { GinkgoWriter.Printf("hostile detail: %d bytes\n", len(detail)) })
			posts.Add(1)
			w.Header().Set("Content-Type", "application/scim+json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, body.String())
			return true
		})
		t := createTarget(ctx, ns, "verbose", testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = srv.URL + scimserver.BasePath })
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		si := newIdentity(ns, "rejected", "verbose")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonRejected))
		for _, typ := range []string{scimv1.ConditionReady, scimv1.ConditionStalled} {
			msg := condition(si, typ).Message
			Expect(msg).To(BeCleanText(1024), typ)
			Expect(msg).To(ContainSubstring("Bad value"), "the readable part is kept")
			Expect(msg).NotTo(ContainSubstring("\u202E"))
		}
		Expect(si.Status.Targets[0].Message).To(BeCleanText(512))
		Eventually(eventNotes(ctx, ns, "rejected")).ShouldNot(BeEmpty())
		for _, note := range eventNotes(ctx, ns, "rejected")(Default) {
			Expect(note).To(BeCleanText(1024))
			Expect(note).NotTo(ContainSubstring("\u202E"))
		}
		Expect(posts.Load()).To(BeNumerically(">=", 1))
	})
})
