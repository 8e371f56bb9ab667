package plugin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"

	"github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nhi-dev/scim-operator/internal/secevent"
)

var _ = Describe("kubectl scim jwks", func() {
	It("prints the public JWK Set of the key Secret, which verifies the tokens the operator signs, and never the private key", func(ctx context.Context) {
		ns := newNamespace(ctx)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		der, err := x509.MarshalPKCS8PrivateKey(key)
		Expect(err).NotTo(HaveOccurred())
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "set-key"},
			Data: map[string][]byte{"tls.key": pemKey, "kid": []byte("2026-12")}}
		Expect(k8s.Create(ctx, secret)).To(Succeed())

		res := kubectlScim(ctx, time.Time{}, "jwks", "set-key", "-n", ns)
		Expect(res.err).NotTo(HaveOccurred(), res.Err)
		var set jose.JSONWebKeySet
		Expect(json.Unmarshal([]byte(res.Out), &set)).To(Succeed())
		Expect(set.Keys).To(HaveLen(1))
		Expect(set.Keys[0].KeyID).To(Equal("2026-12"))
		Expect(set.Keys[0].IsPublic()).To(BeTrue())
		Expect(res.Out).NotTo(ContainSubstring(`"d"`), "no private exponent")

		By("a token signed by the operator's signer over the same Secret verifies with the printed set")
		signer, err := secevent.SignerFromSecret(secret)
		Expect(err).NotTo(HaveOccurred())
		token, err := signer.Sign(secevent.Claims{Issuer: "https://cluster.example/scim-operator", ID: "jti-1"})
		Expect(err).NotTo(HaveOccurred())
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
		Expect(err).NotTo(HaveOccurred())
		_, err = jws.Verify(set.Keys[0])
		Expect(err).NotTo(HaveOccurred())
	})

	It("names what is missing: the Secret, or the key in it", func(ctx context.Context) {
		ns := newNamespace(ctx)
		res := kubectlScim(ctx, time.Time{}, "jwks", "nope", "-n", ns)
		Expect(res.err).To(MatchError(ContainSubstring(`secret "nope" not found in namespace "` + ns + `"`)))

		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "empty"},
			Data: map[string][]byte{"token": []byte("not a key")}})).To(Succeed())
		res = kubectlScim(ctx, time.Time{}, "jwks", "empty", "-n", ns)
		Expect(res.err).To(MatchError(ContainSubstring(`has neither "tls.key" nor "key.pem"`)))
		Expect(res.Err + res.Out).NotTo(ContainSubstring("not a key"))
	})
})
