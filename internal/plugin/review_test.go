package plugin

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

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
		Expect(r.Out).To(Equal("serviceidentity " + ns + "/billing-bot reviewed at 2026-11-25T09:30:15Z by plugin-admin (annotation scim.nhi.dev/reviewed-at)\nowner: alice@example.com\n"))
		si := get(ctx, ns, "billing-bot")
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.ReviewedAtAnnotation, "2026-11-25T09:30:15Z"))
		// The reviewer names itself as config/admission's review-attestation policy records it.
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.ReviewedByAnnotation, "plugin-admin"))
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.ReviewedByGroupsAnnotation, `["system:masters","system:authenticated"]`))
		Expect(managers(si)).To(ContainElement(FieldManager))
		Expect(si.Spec.Suspend).To(BeFalse())

		By("a later review replaces the earlier one, and other annotations stay")
		Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"team":"billing"}}}`)))).To(Succeed())
		r = kubectlScim(ctx, now.Add(24*time.Hour), "review", "billing-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		si = get(ctx, ns, "billing-bot")
		Expect(si.Annotations).To(Equal(map[string]string{scimv1.ReviewedAtAnnotation: "2026-11-26T09:30:15Z", "team": "billing",
			scimv1.ReviewedByAnnotation: "plugin-admin", scimv1.ReviewedByGroupsAnnotation: `["system:masters","system:authenticated"]`}))
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

	It("refuses a user who may edit the identity but not review it, and changes nothing", func() {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "identity-editor"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"},
				Verbs: []string{"get", "list", "patch", "update"}}}}
		Expect(k8s.Create(ctx, role)).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "identity-editor"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "tenant-" + ns}}})).To(Succeed())
		tenant := writeKubeconfig(envtest.User{Name: "tenant-" + ns})
		var r result
		// RBAC reaches the authorizer's cache shortly after the RoleBinding is written.
		Eventually(func() string {
			r = kubectlScimAs(ctx, tenant, now, "review", "billing-bot", "-n", ns)
			return fmt.Sprint(r.err)
		}).Should(ContainSubstring("you may not review serviceidentity " + ns + "/billing-bot: an attestation needs the \"review\" verb"))
		Expect(get(ctx, ns, "billing-bot").Annotations).NotTo(HaveKey(scimv1.ReviewedAtAnnotation))
	})
})
