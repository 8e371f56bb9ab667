package plugin

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

var _ = Describe("kubectl scim review", func() {
	var (
		ctx context.Context
		now time.Time
		ns  string
	)

	BeforeEach(func() {
		ctx = context.Background()
		now = time.Date(2026, 11, 25, 9, 30, 15, 0, time.UTC)
		ns = newNamespace(ctx)
		si := identityIn(ns, "billing-bot", ref("okta"))
		si.Spec.Owner = "alice@example.com"
		createIdentity(ctx, si, scimv1.ServiceIdentityStatus{})
	})

	managers := func(si *scimv1.ServiceIdentity) []string {
		var out []string
		for _, mf := range si.ManagedFields {
			out = append(out, mf.Manager)
		}
		return out
	}

	It("records the attestation at the current time, in UTC, as the kubectl-scim field manager", func() {
		r := kubectlScim(ctx, now.Add(400*time.Millisecond), "review", "billing-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(Equal("serviceidentity " + ns + "/billing-bot reviewed at 2026-11-25T09:30:15Z (annotation scim.nhi.dev/reviewed-at)\nowner: alice@example.com\n"))
		si := get(ctx, ns, "billing-bot")
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.ReviewedAtAnnotation, "2026-11-25T09:30:15Z"))
		Expect(managers(si)).To(ContainElement(FieldManager))
		Expect(si.Spec.Suspend).To(BeFalse())

		By("a later review replaces the earlier one, and other annotations stay")
		Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"team":"billing"}}}`)))).To(Succeed())
		r = kubectlScim(ctx, now.Add(24*time.Hour), "review", "billing-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		si = get(ctx, ns, "billing-bot")
		Expect(si.Annotations).To(Equal(map[string]string{scimv1.ReviewedAtAnnotation: "2026-11-26T09:30:15Z", "team": "billing"}))
	})

	It("records a past --at in UTC", func() {
		r := kubectlScim(ctx, now, "review", "billing-bot", "-n", ns, "--at", "2026-11-24T18:00:00+02:00")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(get(ctx, ns, "billing-bot").Annotations).To(HaveKeyWithValue(scimv1.ReviewedAtAnnotation, "2026-11-24T16:00:00Z"))
	})

	It("refuses a time in the future, a time that is not RFC 3339, and changes nothing", func() {
		r := kubectlScim(ctx, now, "review", "billing-bot", "-n", ns, "--at", "2026-11-25T09:30:16Z")
		Expect(r.err).To(MatchError(ContainSubstring("--at 2026-11-25T09:30:16Z is in the future")))
		r = kubectlScim(ctx, now, "review", "billing-bot", "-n", ns, "--at", "yesterday")
		Expect(r.err).To(MatchError(ContainSubstring(`--at "yesterday" is not an RFC 3339 time`)))
		r = kubectlScim(ctx, now, "review", "billing-bot", "-n", ns, "--at", "2026-11-24")
		Expect(r.err).To(HaveOccurred())
		si := get(ctx, ns, "billing-bot")
		Expect(si.Annotations).NotTo(HaveKey(scimv1.ReviewedAtAnnotation))
		Expect(managers(si)).NotTo(ContainElement(FieldManager))
	})

	It("refuses an identity that does not exist, or is being deleted, and creates nothing", func() {
		r := kubectlScim(ctx, now, "review", "ghost", "-n", ns)
		Expect(r.err).To(MatchError(`serviceidentity "ghost" not found in namespace "` + ns + `"`))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ghost"}, &scimv1.ServiceIdentity{})).NotTo(Succeed())

		si := get(ctx, ns, "billing-bot")
		Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":["`+scimv1.DeprovisionFinalizer+`"]}}`)))).To(Succeed())
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		})
		r = kubectlScim(ctx, now, "review", "billing-bot", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring("is being deleted")))
		Expect(get(ctx, ns, "billing-bot").Annotations).NotTo(HaveKey(scimv1.ReviewedAtAnnotation))
	})
})
