package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

type pki struct {
	caPEM                 []byte
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	serverCert            tls.Certificate
	clientCert, clientKey []byte
}

func newPKI() *pki {
	p := &pki{}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey)
	Expect(err).NotTo(HaveOccurred())
	p.ca, _ = x509.ParseCertificate(der)
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	issue := func(serial int64, usage x509.ExtKeyUsage, ip bool) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("leaf-", serial)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
		Expect(err).NotTo(HaveOccurred())
		kb, err := x509.MarshalECPrivateKey(key)
		Expect(err).NotTo(HaveOccurred())
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	crt, key := issue(2, x509.ExtKeyUsageServerAuth, true)
	p.serverCert, err = tls.X509KeyPair(crt, key)
	Expect(err).NotTo(HaveOccurred())
	p.clientCert, p.clientKey = issue(3, x509.ExtKeyUsageClientAuth, false)
	return p
}

var _ = Describe("Authentication and TLS", func() {
	ctx := context.Background()

	It("uses OAuth2 client credentials over mTLS with a custom CA, caching the token and refreshing it on 401", func() {
		ns := newNamespace(ctx)
		p := newPKI()
		var current atomic.Value
		current.Store("token-1")
		var issued atomic.Int32
		tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, secret, ok := r.BasicAuth()
			if !ok || id != "operator" || secret != "client-s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = fmt.Fprint(w, `{"error":"invalid_client","error_description":"bad client-s3cret? no"}`)
				return
			}
			issued.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":3600}`, current.Load())
		}))
		defer tokens.Close()

		backend, err := scimserver.New("")
		Expect(err).NotTo(HaveOccurred())
		scimTLS := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+current.Load().(string) {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			backend.ServeHTTP(w, r)
		}))
		pool := x509.NewCertPool()
		pool.AddCert(p.ca)
		scimTLS.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
		scimTLS.StartTLS()
		defer scimTLS.Close()

		for _, s := range []*corev1.Secret{
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"}, Data: map[string][]byte{"ca.crt": p.caPEM}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client-cert"}, Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{"tls.crt": p.clientCert, "tls.key": p.clientKey}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "oauth"}, Data: map[string][]byte{"id": []byte("operator"), "secret": []byte("client-s3cret")}},
		} {
			Expect(k8s.Create(ctx, s)).To(Succeed())
		}
		t := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secure"}, Spec: scimv1.ScimTargetSpec{
			Endpoint: scimTLS.URL + scimserver.BasePath,
			Auth: scimv1.Auth{
				OAuth2ClientCredentials: &scimv1.OAuth2ClientCredentials{TokenURL: tokens.URL + "/token",
					ClientIDSecretKeyRef:     scimv1.SecretKeySelector{Name: "oauth", Key: "id"},
					ClientSecretSecretKeyRef: scimv1.SecretKeySelector{Name: "oauth", Key: "secret"}, Scopes: []string{"scim"}},
				TLS: &scimv1.ClientTLSAuth{ClientCertSecretRef: scimv1.SecretReference{Name: "client-cert"}},
			},
			TLS: &scimv1.TLSConfig{CABundleSecretRef: &scimv1.SecretKeySelector{Name: "ca", Key: "ca.crt"}},
		}}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		si := newIdentity(ns, "mtls-bot", "secure")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(backend.UsersWhere("userName", "mtls-bot."+ns)).To(HaveLen(1))
		Expect(issued.Load()).To(Equal(int32(1)), "the token is cached across probes and reconciles")

		// The provider rotates its tokens: the next call gets 401, refreshes once, succeeds.
		current.Store("token-2")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "after rotation" })
		Eventually(func() any { return backend.UsersWhere("userName", "mtls-bot."+ns)[0]["displayName"] }).Should(Equal("after rotation"))
		Expect(issued.Load()).To(Equal(int32(2)))

		// A wrong client secret: the condition explains, and never shows a secret.
		oauth := &corev1.Secret{}
		Expect(k8s.Get(ctx, keyOf(ns, "oauth"), oauth)).To(Succeed())
		oauth.Data["secret"] = []byte("wrong-s3cret")
		Expect(k8s.Update(ctx, oauth)).To(Succeed())
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonCredentials))
		msg := condition(t, scimv1.ConditionReady).Message
		Expect(msg).To(ContainSubstring("401"))
		for _, secret := range []string{"wrong-s3cret", "client-s3cret", "token-2", "PRIVATE KEY"} {
			Expect(msg).NotTo(ContainSubstring(secret))
		}
	})

	It("refuses an endpoint whose certificate it cannot verify, unless insecureSkipVerify (with a Warning)", func() {
		ns := newNamespace(ctx)
		backend, err := scimserver.New(testToken)
		Expect(err).NotTo(HaveOccurred())
		srv := httptest.NewTLSServer(backend)
		defer srv.Close()
		t := createTarget(ctx, ns, "self-signed", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.URL + scimserver.BasePath
			t.Spec.AllowInsecureHTTP = false
		})
		// The probe is retried: on a machine short of CPU the first handshake can outlast the
		// suite's 2 s SCIM timeout, and that attempt reports the deadline instead.
		Eventually(func(g Gomega) string {
			g.Expect(k8s.Get(ctx, keyOf(ns, "self-signed"), t)).To(Succeed())
			c := condition(t, scimv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			return strings.ToLower(c.Message)
		}, "30s").Should(ContainSubstring("certificate"))

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "self-signed"), t)).To(Succeed())
			t.Spec.TLS = &scimv1.TLSConfig{InsecureSkipVerify: true}
			g.Expect(k8s.Update(ctx, t)).To(Succeed())
		}).Should(Succeed())
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Eventually(eventReasons(ctx, ns, "self-signed")).Should(ContainElement("InsecureSkipVerify"))
	})
})

var _ = Describe("Compatibility", func() {
	ctx := context.Background()
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("updates with PUT when patchMode is Put, keeping attributes set by others", func() {
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "put-only", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Compatibility = &scimv1.Compatibility{PatchMode: scimv1.PatchModePut}
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		si := newIdentity(ns, "putter", "put-only")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		scimSrv.Users.Mutate(si.Status.Targets[0].ID, func(a map[string]any) { a["title"] = "set by the app" })
		patches, puts := scimSrv.Requests(http.MethodPatch, "Users/{id}"), scimSrv.Requests(http.MethodPut, "Users/{id}")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "via PUT" })
		Eventually(func() any { return accountOf(ns, "putter")["displayName"] }).Should(Equal("via PUT"))
		Expect(accountOf(ns, "putter")["title"]).To(Equal("set by the app"))
		Expect(scimSrv.Requests(http.MethodPut, "Users/{id}")).To(Equal(puts + 1))
		Expect(scimSrv.Requests(http.MethodPatch, "Users/{id}")).To(Equal(patches))
	})

	It("sends If-Match when ETags are supported, and on 412 re-reads and re-diffs once", func() {
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "etag", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Compatibility = &scimv1.Compatibility{ServiceProviderConfigOverride: &scimv1.Capabilities{ETag: ptr.To(true)}}
		})
		Eventually(get(ctx, t)).Should(WithTransform(func(t *scimv1.ScimTarget) bool {
			return t.Status.Capabilities != nil && t.Status.Capabilities.ETag != nil && *t.Status.Capabilities.ETag
		}, BeTrue()))
		si := newIdentity(ns, "versioned", "etag")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		var ifMatch atomic.Value
		ifMatch.Store("")
		var patches, reads atomic.Int32
		id := si.Status.Targets[0].ID
		scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/Users/"+id) {
				reads.Add(1) // this account's reads only: the server is shared with other specs' resyncs
			}
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, id) {
				ifMatch.Store(r.Header.Get("If-Match"))
				if patches.Add(1) == 1 {
					// Someone else changes the account between our read and our write: 412.
					scimSrv.Users.Mutate(id, func(a map[string]any) { a["nickName"] = "changed elsewhere" })
				}
			}
			return nil
		})
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "after 412" })
		Eventually(func() any { return accountOf(ns, "versioned")["displayName"] }).Should(Equal("after 412"))
		Expect(ifMatch.Load()).To(HavePrefix(`W/"`))
		Expect(patches.Load()).To(Equal(int32(2)), "one 412, then one successful PATCH")
		Expect(reads.Load()).To(Equal(int32(2)), "a read, and a re-read after 412")
		Expect(accountOf(ns, "versioned")["nickName"]).To(Equal("changed elsewhere"))
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	})
})
