package controller

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// The attacks of the fifth review, on the first provisioning writing nothing before its POST
// on a namespace's own target: what a tenant or a shared provider could make of an account no
// status names.
var _ = Describe("Review 5: accounts no status names", func() {
	ctx := context.Background()
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("creates no account on a ClusterScimTarget for an identity whose status cannot be written, unless the creation stamps are guarded", Serial, func() {
		// Without config/admission's creation-stamps policy (--creation-stamps-guarded unset), a
		// tenant could drop the stamp that records the account: a Pending entry comes first.
		// creation_stamps_test.go shows the guarded install, where the stamp is the record.
		restartManager(false)
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "unwritable", []string{ns})
		// What a tenant can do to its own identity's status (an object grown to the size
		// limit, say), played by a policy that refuses every status write in the namespace.
		DeferCleanup(refuseStatusWrites(ctx, ns))

		si := clusterIdentity(ns, "unrecordable", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Consistently(accountsWithExternalID(ns, "unrecordable"), "3s", "200ms").Should(BeEmpty(),
			"an account on a shared provider that no status could name")
	})

	It("two targets on one provider: the sweep of either leaves the accounts the other provisioned alone", func() {
		srv := ownServer(testToken)
		at := func(e *string) { *e = srv.Endpoint() }
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "same-provider", []string{ns}, func(t *scimv1.ClusterScimTarget) { at(&t.Spec.Endpoint) })
		own := createTarget(ctx, ns, "own", testToken, func(t *scimv1.ScimTarget) { at(&t.Spec.Endpoint) })
		Eventually(get(ctx, own)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		onOwn, onShared := newIdentity(ns, "on-own", "own"), clusterIdentity(ns, "on-shared", cst.Name)
		for _, si := range []*scimv1.ServiceIdentity{onOwn, onShared} {
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}
		versions := func() []string {
			var out []string
			for _, si := range []*scimv1.ServiceIdentity{onOwn, onShared} {
				Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
				out = append(out, si.ResourceVersion)
			}
			return out
		}
		before := versions()
		// Each sweep lists both accounts (same provider, same namespace's externalIds).
		Expect(sweepNow(ctx, cst).Flagged).To(BeZero())
		Expect(sweepNow(ctx, own).Flagged).To(BeZero())
		Consistently(versions, "2s", "200ms").Should(Equal(before), "an identity was written")
		for _, name := range []string{"on-own", "on-shared"} {
			Expect(accountsWithExternalIDOn(srv, ns, name)()).To(ConsistOf(HaveKeyWithValue("active", true)), name)
		}
	})
})

// refuseStatusWrites makes the API server refuse every status write of an identity in ns (a
// ValidatingAdmissionPolicy), once that is in force, and returns what lifts it again.
func refuseStatusWrites(ctx context.Context, ns string) func() {
	GinkgoHelper()
	policy := &admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{GenerateName: "refuse-status-"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{scimv1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"serviceidentities/status"}}}}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "status is not writable here"}},
		}}
	Expect(k8s.Create(ctx, policy)).To(Succeed())
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}}}}
	Expect(k8s.Create(ctx, binding)).To(Succeed())
	probe := newIdentity(ns, "status-probe", "absent")
	probe.Annotations = map[string]string{scimv1.ForceOrphanAnnotation: "true"}
	Expect(k8s.Create(ctx, probe)).To(Succeed())
	write := func() error {
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(probe), probe)).To(Succeed())
		probe.Status.UserName = time.Now().String()
		return k8s.Status().Update(ctx, probe)
	}
	Eventually(write).Should(MatchError(ContainSubstring("status is not writable here")))
	return func() {
		Expect(k8s.Delete(ctx, binding)).To(Succeed())
		Expect(k8s.Delete(ctx, policy)).To(Succeed())
		Eventually(write).Should(Succeed())
	}
}
