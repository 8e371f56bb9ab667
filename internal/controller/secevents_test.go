package controller

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// The Security Event Token of a revocation is kept on the identity's status (its outbox) and
// sent from there until the receiver accepts it: neither a restart nor a receiver that asks to
// wait loses it, and the identity is held (finalizer scim.nhi.dev/security-events) only until
// then, never the revocation.
var _ = Describe("Security event outbox", func() {
	ctx := context.Background()

	revokedWhileReceiverFails := func(ns, name string, fail func()) (string, *scimv1.ServiceIdentity) {
		fastTarget(ctx, ns, "outbox")
		si := newIdentity(ns, name, "outbox")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := si.Status.Targets[0].ID
		DeferCleanup(setRecv.Recover)
		fail()
		faulted := setRecv.Faulted()
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		By("the account is revoked without waiting for the receiver")
		Eventually(accountsWithExternalID(ns, name)).Should(BeEmpty())
		Eventually(setRecv.Faulted).Should(BeNumerically(">", faulted), "the receiver was asked, and failed")
		return id, si
	}
	gone := func(si *scimv1.ServiceIdentity) func() bool {
		return func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, keyOf(si.Namespace, si.Name), &scimv1.ServiceIdentity{}))
		}
	}

	It("attack: a restart loses the security events still queued", Serial, func() {
		ns := newNamespace(ctx)
		id, si := revokedWhileReceiverFails(ns, "queued", func() { setRecv.FailNext(-1, 503, "") })
		// What the outbox recorded before the restart (nothing when the identity is gone).
		var recorded string
		if k8s.Get(ctx, keyOf(ns, si.Name), si) == nil && len(si.Status.Targets) == 1 && si.Status.Targets[0].Revocation != nil {
			recorded = si.Status.Targets[0].Revocation.SecurityEvent
		}

		stopMgr()
		Eventually(mgrDone, "30s").Should(BeClosed())
		setRecv.Recover()
		startManager()

		By("the token still waiting when the operator stopped arrives after the restart, once")
		Eventually(setsFor("/Users/"+id), "20s").Should(HaveLen(1))
		Consistently(setsFor("/Users/"+id), "2s").Should(HaveLen(1))
		Expect(setsFor("/Users/" + id)()[0].JTI).To(Equal(recorded), "the jti recorded on status before it was sent")
		By("and the identity goes once it is delivered")
		Eventually(gone(si)).Should(BeTrue())
	})

	It("attack: a receiver's long Retry-After drops the security event", func() {
		ns := newNamespace(ctx)
		rejected := len(setRecv.Rejected())
		id, si := revokedWhileReceiverFails(ns, "throttled", func() { setRecv.FailNext(1, 503, "7200") })
		By("the wait is honoured (up to the operator's maximum, 3 s here), the token kept on status")
		Consistently(setsFor("/Users/"+id), "1500ms").Should(BeEmpty())
		Expect(k8s.Get(ctx, keyOf(ns, si.Name), si)).To(Succeed(), "the identity is held while its token is not delivered")
		Expect(si.Finalizers).To(ConsistOf(scimv1.SecurityEventsFinalizer))
		Expect(si.Status.Targets[0].Revocation.SecurityEventDelivery).To(Equal(scimv1.SecurityEventPending))
		By("then it is sent again, and delivered")
		Eventually(setsFor("/Users/"+id), "20s").Should(HaveLen(1))
		Expect(setsFor("/Users/" + id)()[0].JTI).To(Equal(si.Status.Targets[0].Revocation.SecurityEvent))
		Eventually(gone(si)).Should(BeTrue())
		Expect(setRecv.Rejected()).To(HaveLen(rejected), "sent once accepted: no duplicate jti")
	})
})
