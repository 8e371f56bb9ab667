package controller

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// Retirement decided from state (issue 12): the suite has no garbage collector, so an identity
// whose workload is gone stays, as it does for a while in a real cluster, and a workload deleted
// while the operator is down produces no event after the restart.
// deploymentIdentity creates a Deployment and an identity on "acme" it owns through
// spec.workloadRef, and waits until the identity is Ready with its owner recorded on status.
func deploymentIdentity(ctx context.Context, ns, deploymentName, name string) (*appsv1.Deployment, *scimv1.ServiceIdentity) {
	GinkgoHelper()
	d := deployment(ns, deploymentName, nil)
	Expect(k8s.Create(ctx, d)).To(Succeed())
	si := newIdentity(ns, name, "acme")
	si.Spec.WorkloadRef = &scimv1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name}
	Expect(k8s.Create(ctx, si)).To(Succeed())
	Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) *scimv1.WorkloadOwner { return s.Status.Workload },
		And(Not(BeNil()), HaveField("UID", d.UID))), "the owner is recorded on status")
	return d, si
}

var _ = Describe("Level-triggered retirement", func() {
	ctx := context.Background()

	It("revokes the account of a workload deleted while the operator was down, a same-name successor notwithstanding", Serial, func() {
		ns := readyTargetNamespace(ctx)
		d, si := deploymentIdentity(ctx, ns, "retired-offline", "offline")
		Expect(accountOf(ns, "offline")["active"]).To(BeTrue())

		stopMgr()
		Eventually(mgrDone, "30s").Should(BeClosed())
		Expect(k8s.Delete(ctx, d)).To(Succeed())
		successor := deployment(ns, "retired-offline", nil) // same name, another object
		Expect(k8s.Create(ctx, successor)).To(Succeed())
		startManager()

		Eventually(accountsWithExternalID(ns, "offline"), "10s").Should(BeEmpty(), "revoked from state, with no deletion event")
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("another one"))
		Consistently(accountsWithExternalID(ns, "offline"), "1s").Should(BeEmpty(), "and not provisioned again")
		Expect(k8s.Delete(ctx, successor)).To(Succeed())
	})

	It("keeps an identity revoked once orphan propagation removed its ownerReference", Serial, func() {
		ns := readyTargetNamespace(ctx)
		d, si := deploymentIdentity(ctx, ns, "orphaning", "orphaned")

		stopMgr()
		Eventually(mgrDone, "30s").Should(BeClosed())
		// What the garbage collector does for --cascade=orphan, with the operator down: the
		// ownerReference goes, then the owner. (workloadRef goes too, or it would be re-added.)
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		si.OwnerReferences = nil
		si.Spec.WorkloadRef = nil
		Expect(k8s.Update(ctx, si)).To(Succeed())
		Expect(k8s.Delete(ctx, d)).To(Succeed())
		startManager()

		Eventually(accountsWithExternalID(ns, "orphaned"), "10s").Should(BeEmpty())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
	})
})

var _ = Describe("A namespace being deleted", func() {
	ctx := context.Background()

	It("revokes every identity in it at once, without waiting for the namespace controller to delete them", func() {
		ns := readyTargetNamespace(ctx)
		names := []string{"first", "second", "third"}
		for _, n := range names {
			si := newIdentity(ns, n, "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}
		// The suite has no namespace controller: the namespace stays Terminating and the
		// identities stay, as they do for minutes in a large namespace of a real cluster.
		Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		versions := map[string]string{}
		for _, n := range names {
			Eventually(accountsWithExternalID(ns, n)).Should(BeEmpty(), n)
			si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			versions[n] = si.ResourceVersion
		}
		// Within the grace (Config.NamespaceGrace, 6 s here) the namespace controller deletes
		// the identities, and their deletion records the revocation: nothing is written before.
		Consistently(func() map[string]string {
			now := map[string]string{}
			for _, n := range names {
				si := &scimv1.ServiceIdentity{}
				Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, si)).To(Succeed())
				now[n] = si.ResourceVersion
			}
			return now
		}, "1500ms", "100ms").Should(Equal(versions), "a write on an identity the namespace controller is about to delete")
		// The kill switch does not wait for the grace: `kubectl scim revoke` reads the status.
		first := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names[0]}}
		update(ctx, first, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		Eventually(get(ctx, first), "2s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		// Without a namespace controller, the others record the revocation after the grace.
		for _, n := range names {
			si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}}
			Eventually(get(ctx, si), "15s").
				Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
			Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("namespace " + ns + " is being deleted"))
			Expect(si.DeletionTimestamp.IsZero()).To(BeTrue(), "revoked before its own deletion")
		}
	})
})
