package streams_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const providerIssuer = "https://provider.example/scim"

// eventsProvider starts a reference SCIM server that pushes its SCIM events to the operator's
// endpoint for target name in ns, and declares that target, its token and its JWK Set.
func eventsProvider(ctx context.Context, ns, name string) (*scimserver.Server, scimserver.Events) {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	ev := scimserver.Events{URL: issuer + "/scim-events/namespaces/" + ns + "/scimtargets/" + name, Token: "provider-push",
		Issuer: providerIssuer, Key: key, KeyID: "provider-1", Client: tlsClient}
	srv, err := scimserver.New(scimToken, scimserver.WithEvents(ev))
	Expect(err).NotTo(HaveOccurred())
	Expect(srv.Start("127.0.0.1:0")).To(Succeed())
	DeferCleanup(srv.Stop)
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-token"},
		StringData: map[string]string{"token": scimToken, "events-token": "provider-push", "jwks.json": string(ev.JWKS())}})).To(Succeed())
	ref := func(key string) scimv1.SecretKeySelector {
		return scimv1.SecretKeySelector{Name: name + "-token", Key: key}
	}
	Expect(k8s.Create(ctx, &scimv1.ScimTarget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.ScimTargetSpec{Endpoint: srv.Endpoint(), AllowInsecureHTTP: true,
			Auth:   scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: ref("token")}},
			Events: &scimv1.TargetEvents{Issuer: providerIssuer, JWKSSecretRef: ref("jwks.json"), TokenSecretRef: ref("events-token")}},
	})).To(Succeed())
	return srv, ev
}

func activeOn(srv *scimserver.Server, id string) func() any {
	return func() any {
		for _, u := range srv.Users.All() {
			if u["id"] == id {
				return u["active"]
			}
		}
		return "gone"
	}
}

// adminPatch changes an account through the provider's API, as an administrator there would.
func adminPatch(ctx context.Context, srv *scimserver.Server, id string, value map[string]any) {
	GinkgoHelper()
	body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "replace", "value": value}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, srv.Endpoint()+"/Users/"+id, strings.NewReader(string(body)))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+scimToken)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.Body.Close()).To(Succeed())
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
}

var _ = Describe("A provider's SCIM events (RFC 9967)", func() {
	It("revoke again, within seconds, an account re-activated on the provider", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		srv, _ := eventsProvider(ctx, ns, "app")
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"},
			Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Name: "app"}}}}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Status.Targets).To(HaveLen(1))
			g.Expect(si.Status.Targets[0].ID).NotTo(BeEmpty())
		}).Should(Succeed())
		id := si.Status.Targets[0].ID

		By("suspending the identity: the account is deactivated")
		Eventually(func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil {
				return err
			}
			si.Spec.Suspend = true
			return k8s.Update(ctx, si)
		}).Should(Succeed())
		Eventually(activeOn(srv, id)).Should(BeFalse())

		By("an administrator re-activates it on the provider, which tells the operator")
		adminPatch(ctx, srv, id, map[string]any{"active": true})
		Eventually(func() []scimserver.SentEvent { return srv.SentEvents() }).Should(ContainElement(
			And(HaveField("Type", scimserver.EventActivate), HaveField("ID", id), HaveField("Status", http.StatusAccepted))))
		// The target's sweep is hours away: only the event can make it this quick.
		Eventually(activeOn(srv, id), 10*time.Second).Should(BeFalse())
		Expect(srv.SentEvents()).To(ContainElement(And(HaveField("Type", scimserver.EventDeactivate), HaveField("Status", http.StatusAccepted))),
			"the operator's own correction comes back as an event, which changes nothing more")
		Consistently(activeOn(srv, id), "1s").Should(BeFalse())
	})

	It("are refused without the target's token, key, issuer or this endpoint as audience", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		_, ev := eventsProvider(ctx, ns, "app")
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		token := func(key *ecdsa.PrivateKey, kid, iss, aud string) string {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
				(&jose.SignerOptions{}).WithType("secevent+jwt"))
			Expect(err).NotTo(HaveOccurred())
			b, _ := json.Marshal(map[string]any{"iss": iss, "aud": aud, "jti": "x", "iat": time.Now().Unix(),
				"sub_id": map[string]any{"format": "scim", "uri": "/Users/u1"},
				"events": map[string]any{scimserver.EventActivate: map[string]any{}}})
			jws, err := s.Sign(b)
			Expect(err).NotTo(HaveOccurred())
			out, err := jws.CompactSerialize()
			Expect(err).NotTo(HaveOccurred())
			return out
		}
		pushTo := func(url, bearer, tok string) (int, string) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(tok))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Authorization", "Bearer "+bearer)
			req.Header.Set("Content-Type", "application/secevent+jwt")
			resp, err := tlsClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = resp.Body.Close() }()
			var e struct{ Err string }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			return resp.StatusCode, e.Err
		}
		push := func(bearer, tok string) (int, string) { return pushTo(ev.URL, bearer, tok) }
		key := ev.Key.(*ecdsa.PrivateKey)
		Eventually(func() int { c, _ := push("provider-push", token(key, "provider-1", providerIssuer, ev.URL)); return c }).
			Should(Equal(http.StatusAccepted), "a good token, once the target is in the cache")
		for _, tc := range []struct {
			bearer, tok string
			code        int
			err         string
		}{
			{"wrong", token(key, "provider-1", providerIssuer, ev.URL), 401, "authentication_failed"},
			{"provider-push", token(other, "provider-1", providerIssuer, ev.URL), 400, "invalid_key"},
			{"provider-push", token(key, "provider-1", "https://evil.example", ev.URL), 400, "invalid_issuer"},
			{"provider-push", token(key, "provider-1", providerIssuer, "https://elsewhere.example/"), 400, "invalid_audience"},
			{"provider-push", "not a token", 400, "invalid_request"},
		} {
			code, errCode := push(tc.bearer, tc.tok)
			Expect([]any{code, errCode}).To(Equal([]any{tc.code, tc.err}))
		}
		By("a target that takes no events, or none at all, reads as a wrong token (nothing is told before authentication)")
		createTarget(ctx, ns, "plain")
		for _, name := range []string{"plain", "nope"} {
			url := issuer + "/scim-events/namespaces/" + ns + "/scimtargets/" + name
			Eventually(func() int {
				c, _ := pushTo(url, "provider-push", token(key, "provider-1", providerIssuer, url))
				return c
			}).
				Should(Equal(http.StatusUnauthorized))
		}
	})
})
