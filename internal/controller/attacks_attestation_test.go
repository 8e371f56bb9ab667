package controller

import (
	"context"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// installReviewRecorder creates the review-attestation MutatingAdmissionPolicy, bound (unlike
// the shipped binding) only to namespaces with these labels, until the spec ends.
func installReviewRecorder(ctx context.Context, nsLabels map[string]string) {
	GinkgoHelper()
	installPolicies(ctx, "review-attestation-policy.yaml", "", nsLabels, "MutatingAdmissionPolicy")
}

// installReviewValidator creates the review-attestation ValidatingAdmissionPolicy, bound only
// to namespaces with these labels, until the spec ends.
func installReviewValidator(ctx context.Context, nsLabels map[string]string) {
	GinkgoHelper()
	installPolicies(ctx, "review-attestation-policy.yaml", "", nsLabels, "ValidatingAdmissionPolicy")
}

// attestation is the annotations of an attestation at t by the suite's admin (every verb), as
// config/admission's review-attestation policy records it.
func attestation(ctx context.Context, t time.Time) map[string]string {
	GinkgoHelper()
	me := &authenticationv1.SelfSubjectReview{}
	Expect(k8s.Create(ctx, me)).To(Succeed())
	groups, err := json.Marshal(me.Status.UserInfo.Groups)
	Expect(err).NotTo(HaveOccurred())
	return map[string]string{scimv1.ReviewedAtAnnotation: t.UTC().Format(time.RFC3339),
		scimv1.ReviewedByAnnotation: me.Status.UserInfo.Username, scimv1.ReviewedByGroupsAnnotation: string(groups)}
}

var _ = Describe("Attacks on review attestations", func() {
	ctx := context.Background()
	var ns string
	labels := map[string]string{"scim-test/review-attestation": "on"}
	// tenant may edit the identities of its namespace; reviewer may also review them.
	tenantRule := rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"},
		Verbs: []string{"get", "list", "update", "patch"}}
	reviewRule := rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"},
		Verbs: []string{scimv1.ReviewVerb}}

	// overdue makes an identity attested by the admin two hours ago under a review every hour:
	// overdue, so suspended.
	overdue := func(name string) *scimv1.ServiceIdentity {
		GinkgoHelper()
		fastTarget(ctx, ns, "reviewed")
		si := newIdentity(ns, name, "reviewed")
		si.Spec.Review = &scimv1.ReviewPolicy{Every: scimv1.Duration("1h")}
		si.Annotations = attestation(ctx, time.Now().Add(-2*time.Hour))
		// Retried: for about a second after the suite installed the CRDs, the API server answers
		// 503 to writes an admission policy matches, until it has published the schema to it.
		Eventually(func() error { return k8s.Create(ctx, si) }).Should(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonReviewOverdue))
		return si
	}
	// attest patches annotations onto si as c and returns who the stored (or, dry run, the
	// would-be stored) object names as reviewer.
	attest := func(c client.Client, si *scimv1.ServiceIdentity, annotations map[string]string, opts ...client.PatchOption) (string, error) {
		data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
		Expect(err).NotTo(HaveOccurred())
		u := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: si.Namespace, Name: si.Name}}
		err = c.Patch(ctx, u, client.RawPatch("application/merge-patch+json", data), opts...)
		return u.Annotations[scimv1.ReviewedByAnnotation], err
	}

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "attest-", Labels: labels}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
	})

	It("attack: a tenant attests its own identity with reviewed-at", func() {
		// The shipped policy records who attested (bound here to this spec's namespaces only).
		installReviewRecorder(ctx, labels)
		si := overdue("self-attested")
		admin := si.Annotations[scimv1.ReviewedByAnnotation]

		grant(ctx, ns, "mallory", tenantRule)
		mallory := impersonating("mallory")
		By("mallory, who may update the identity but not review it, attests it, naming the admin as reviewer")
		forged := map[string]string{scimv1.ReviewedAtAnnotation: time.Now().UTC().Truncate(time.Second).Format(time.RFC3339),
			scimv1.ReviewedByAnnotation: admin, scimv1.ReviewedByGroupsAnnotation: `["system:masters"]`}
		// Dry runs until the policy is active.
		Eventually(func() (string, error) { return attest(mallory, si, forged, client.DryRunAll) }).Should(Equal("mallory"))
		Expect(attest(mallory, si, forged)).To(Equal("mallory"), "the admission policy records who wrote it")

		By("the attestation is ignored: the identity stays suspended and status says why")
		Consistently(get(ctx, si), "2s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonReviewOverdue),
			"the tenant's own attestation un-suspended the identity")
		Eventually(get(ctx, si)).Should(WithTransform(func(si *scimv1.ServiceIdentity) string { return si.Status.Review.Message },
			And(ContainSubstring("mallory"), ContainSubstring("ignored"), ContainSubstring("review"))))
		Expect(si.Status.Review.ReviewedBy).To(Equal(admin), "the last attestation taken stands")
		Expect(accountsWithExternalID(ns, "self-attested")()).To(SatisfyAny(BeEmpty(), ConsistOf(HaveKeyWithValue("active", false))))

		By("with the validating policy as well, the API server refuses the attestation outright")
		installReviewValidator(ctx, labels)
		later := time.Now().UTC().Truncate(time.Second).Add(time.Second).Format(time.RFC3339)
		Eventually(func() error {
			_, err := attest(mallory, si, map[string]string{scimv1.ReviewedAtAnnotation: later}, client.DryRunAll)
			return err
		}).Should(MatchError(ContainSubstring("needs the `review` verb on serviceidentities")))
		_, err := attest(mallory, si, map[string]string{scimv1.ReviewedAtAnnotation: later})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	})

	It("takes the attestation of a reviewer with the review verb and records who attested", func() {
		installReviewRecorder(ctx, labels)
		installReviewValidator(ctx, labels)
		si := overdue("reviewed-bot")
		grant(ctx, ns, "rita", tenantRule, reviewRule)
		rita := impersonating("rita")

		By("rita attests (naming someone else, which the policy replaces by her): the identity is active again and status names her")
		attested := time.Now().UTC().Truncate(time.Second)
		review := map[string]string{scimv1.ReviewedAtAnnotation: attested.Format(time.RFC3339), scimv1.ReviewedByAnnotation: "someone-else"}
		Eventually(func() (string, error) { return attest(rita, si, review, client.DryRunAll) }).Should(Equal("rita"))
		Expect(attest(rita, si, review)).To(Equal("rita"))
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Review.ReviewedBy).To(Equal("rita"))
		Expect(si.Status.Review.LastReviewedAt.Time).To(BeTemporally("==", attested))
		Expect(si.Status.Review.Message).To(BeEmpty())
		Eventually(func() any { return accountOf(ns, "reviewed-bot")["active"] }).Should(Equal(true))
	})

	It("ignores an attestation nobody recorded the author of", func() {
		// No admission policy here: reviewed-at alone (or a hand-written reviewed-by of a user
		// who may not review) does not count.
		plain := newNamespace(ctx)
		fastTarget(ctx, plain, "reviewed")
		si := newIdentity(plain, "unrecorded", "reviewed")
		si.Spec.Review = &scimv1.ReviewPolicy{Every: scimv1.Duration("1h")}
		si.Annotations = map[string]string{scimv1.ReviewedAtAnnotation: time.Now().UTC().Add(-2 * time.Hour).Format(time.RFC3339)}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(WithTransform(func(si *scimv1.ServiceIdentity) string {
			if si.Status.Review == nil {
				return ""
			}
			return si.Status.Review.Message
		}, ContainSubstring("no annotation "+scimv1.ReviewedByAnnotation)))
		Expect(si.Status.Review.LastReviewedAt).To(BeNil())
		Expect(si.Status.Review.NextReviewAt.Time).To(BeTemporally("~", si.CreationTimestamp.Add(time.Hour), time.Second))

		annotate(ctx, si, scimv1.ReviewedByAnnotation, "mallory")
		Eventually(get(ctx, si)).Should(WithTransform(func(si *scimv1.ServiceIdentity) string { return si.Status.Review.Message },
			And(ContainSubstring("mallory"), ContainSubstring("may not review"))))
		Expect(si.Status.Review.LastReviewedAt).To(BeNil())
	})
})
