package controller

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

var _ = Describe("ScimTarget", func() {
	ctx := context.Background()

	It("becomes Ready with the discovered capabilities", func() {
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "acme", testToken)
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonReady))
		Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))
		Expect(t.Status.Capabilities).NotTo(BeNil())
		Expect(*t.Status.Capabilities.Patch).To(BeTrue())
		Expect(*t.Status.Capabilities.Filter).To(BeTrue())
		Expect(t.Status.LastProbeTime).NotTo(BeNil())
	})

	It("explains a refused token and recovers within seconds when the secret is rotated", func() {
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "acme", "wrong-token")
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonUnauthorized))
		Expect(condition(t, scimv1.ConditionReady).Message).To(ContainSubstring("401"))
		Expect(condition(t, scimv1.ConditionReady).Message).NotTo(ContainSubstring("wrong-token"))

		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, keyOf(ns, "acme-token"), secret)).To(Succeed())
		secret.Data = map[string][]byte{"token": []byte(testToken)}
		Expect(k8s.Update(ctx, secret)).To(Succeed())
		Eventually(get(ctx, t), "5s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonReady))
	})

	It("says which secret is missing", func() {
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "acme", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Auth.BearerToken.SecretKeyRef.Name = "does-not-exist"
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonCredentials))
		Expect(condition(t, scimv1.ConditionReady).Message).To(ContainSubstring(ns + "/does-not-exist not found"))
	})

	DescribeTable("rejects invalid specs with a message a user understands",
		func(mutate func(*scimv1.ScimTarget), message string) {
			ns := newNamespace(ctx)
			t := &scimv1.ScimTarget{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
				Spec: scimv1.ScimTargetSpec{
					Endpoint: "https://app.example.com/scim/v2",
					Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{
						SecretKeyRef: scimv1.SecretKeySelector{Name: "s", Key: "token"}}},
				},
			}
			mutate(t)
			err := k8s.Create(ctx, t)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("plain http without allowInsecureHTTP",
			func(t *scimv1.ScimTarget) { t.Spec.Endpoint = "http://app.example.com/scim/v2" },
			"endpoint must use https:// unless allowInsecureHTTP is true"),
		Entry("no auth method",
			func(t *scimv1.ScimTarget) { t.Spec.Auth = scimv1.Auth{} },
			"auth must set exactly one of bearerToken, basic or oauth2ClientCredentials"),
		Entry("two auth methods",
			func(t *scimv1.ScimTarget) {
				t.Spec.Auth.Basic = &scimv1.BasicAuth{SecretRef: scimv1.SecretReference{Name: "s"}}
			},
			"auth must set exactly one of bearerToken, basic or oauth2ClientCredentials"),
		Entry("an unknown deletion policy",
			func(t *scimv1.ScimTarget) { t.Spec.DeletionPolicy = "Shred" },
			"Unsupported value: \"Shred\""),
	)

	It("accepts plain http with allowInsecureHTTP and applies the schema defaults", func() {
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "dev", testToken)
		Expect(t.Spec.DeletionPolicy).To(Equal(scimv1.DeletionPolicyDelete))
		Expect(t.Spec.ResyncInterval).NotTo(BeNil())
		Expect(*t.Spec.ResyncInterval).To(Equal(scimv1.Duration("10m")))
		Expect(t.Spec.Adoption).To(Equal(scimv1.AdoptionNever))
	})
})
