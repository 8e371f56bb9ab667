package controller

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// holdWrites holds every POST, PUT and PATCH that match until release is called (a process
// killed while they are in flight would leave the status as the spec then finds it).
func holdWrites(match func(*http.Request) bool) (held <-chan struct{}, release func()) {
	arrived, gate := make(chan struct{}), make(chan struct{})
	var once, closeArrived sync.Once
	scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
		if r.Method == http.MethodGet || r.Method == http.MethodDelete || !match(r) {
			return nil
		}
		closeArrived.Do(func() { close(arrived) })
		<-gate
		return nil
	})
	return arrived, func() { once.Do(func() { close(gate) }) }
}

// bodyNames matches requests whose body names the string (read, then put back for the server).
func bodyNames(s string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if strings.Contains(r.URL.Path, s) {
			return true
		}
		if r.Body == nil {
			return false
		}
		b, err := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		return err == nil && strings.Contains(string(b), s)
	}
}

func statusEntry(ctx context.Context, si *scimv1.ServiceIdentity, name string) func(Gomega) scimv1.IdentityTargetStatus {
	return func(g Gomega) scimv1.IdentityTargetStatus {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		for _, e := range si.Status.Targets {
			if e.Name == name {
				return e
			}
		}
		return scimv1.IdentityTargetStatus{}
	}
}

// What a kill at the worst moment must not lose: before any call that can create or
// reactivate an account, status already says the account may exist there and who owns it.
var _ = Describe("What a crash must not lose", func() {
	ctx := context.Background()
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("a process that remembers nothing reaches the same status and writes nothing to the provider", func() {
		ns := readyTargetNamespace(ctx)
		si := newIdentity(ns, "amnesia", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		before := si.Status.DeepCopy()
		writes := func() int {
			n := scimSrv.Requests(http.MethodPost, "Users")
			for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
				n += scimSrv.Requests(m, "Users/{id}")
			}
			return n
		}
		sent := writes()

		fresh := freshIdentityReconciler() // what every map of its memory would hold is missing
		Expect(fresh.Remembered()).To(BeZero())
		_, err := fresh.Reconcile(ctx, reconcile.Request{NamespacedName: keyOf(ns, "amnesia")})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Get(ctx, keyOf(ns, "amnesia"), si)).To(Succeed())
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Targets).To(HaveLen(len(before.Targets)))
		for i, e := range si.Status.Targets {
			Expect(e.ID).To(Equal(before.Targets[i].ID))
			Expect(e.State).To(Equal(before.Targets[i].State))
		}
		Expect(writes()).To(Equal(sent), "an empty memory cost writes to the provider, not only reads")
	})

	It("records the owner spec.workloadRef names before the first call, with the target in the same write", func() {
		ns := readyTargetNamespace(ctx)
		d := deployment(ns, "first-call", nil)
		Expect(k8s.Create(ctx, d)).To(Succeed())
		si := newIdentity(ns, "first-call", "acme")
		si.Spec.WorkloadRef = &scimv1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name}
		held, release := holdWrites(bodyNames(externalIDOf(ns, "first-call")))
		DeferCleanup(release)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(held).Should(BeClosed())

		// The POST is in flight: the owner (whose ownerReference the operator added after the
		// identity's creation, so nothing stamped it) is on record, and the first status write
		// ends what the stamps say, so the targets they name are recorded with it.
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		Expect(si.Status.Workload).To(And(Not(BeNil()), HaveField("UID", d.UID)), "the owner is recorded before the account exists")
		Expect(si.Status.Targets).To(ConsistOf(HaveField("State", scimv1.TargetStatePending)))
		release()
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	})

	It("records a deprovisioned target as Pending before provisioning it again", func() {
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "given-back", []string{ns})
		si := clusterIdentity(ns, "returning", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		allowOnly(ctx, cst, "someone-else")
		Eventually(statusEntry(ctx, si, cst.Name)).Should(HaveField("State", scimv1.TargetStateDeprovisioned))
		Eventually(accountsWithExternalID(ns, "returning")).Should(BeEmpty())

		held, release := holdWrites(bodyNames(externalIDOf(ns, "returning")))
		DeferCleanup(release)
		allowOnly(ctx, cst, ns)
		Eventually(held).Should(BeClosed())
		Expect(statusEntry(ctx, si, cst.Name)(Default)).To(HaveField("State", scimv1.TargetStatePending),
			"Deprovisioned on status while the account is created again: a kill now would make every later revocation skip it")
		release()
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	})

	It("applies the target's policy to a withdrawn account whatever the identity's own policy, when the tenant drops the targetRef", func() {
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "withdrawn-drop", []string{ns}, func(t *scimv1.ClusterScimTarget) {
			t.Spec.DeletionPolicy = scimv1.DeletionPolicyDelete
		})
		si := clusterIdentity(ns, "keeper", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := accountOf(ns, "keeper")["id"].(string)
		// The withdrawal fails on the target for now.
		scimSrv.Faults.Add(scimserver.On("", "/Users/"+id, scimserver.Fault{Status: http.StatusServiceUnavailable, Detail: "maintenance"}))
		allowOnly(ctx, cst, "someone-else")
		Eventually(statusEntry(ctx, si, cst.Name)).Should(HaveField("Message", ContainSubstring("maintenance")))

		// The tenant races it: its own Orphan policy, and the target dropped from the spec.
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.DeletionPolicy = ptr.To(scimv1.DeletionPolicyOrphan)
			si.Spec.TargetRefs = []scimv1.TargetReference{{Name: "elsewhere"}}
		})
		// The operator acted on the new spec (it reports the new target) before the target is back.
		Eventually(statusEntry(ctx, si, "elsewhere")).Should(HaveField("Name", "elsewhere"))
		scimSrv.Faults.Clear()
		Eventually(accountsWithExternalID(ns, "keeper")).Should(BeEmpty(), "the target's Delete applies, not the identity's Orphan")
	})

	It("forgets a misspelt targetRef once the spec is fixed", func() {
		ns := readyTargetNamespace(ctx)
		si := newIdentity(ns, "typo", "acme", "acmee")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonTargetNotFound))
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.TargetRefs = si.Spec.TargetRefs[:1] })
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Targets).To(ConsistOf(HaveField("Name", "acme")))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue(), "nothing holds the finalizer")
	})
})

// A new identity's first pass writes nothing before its POST but the finalizer, with its owner
// stamped in the same write (the admission policy does both at creation). A kill right after
// the POST so leaves an account that no status names: these specs prove what finds it.
var _ = Describe("A new identity's account created just before a kill", Serial, func() {
	ctx := context.Background()
	AfterEach(func() { scimSrv.Faults.Clear() })

	// killedAfterFirstPost creates an identity owned by a new ServiceAccount and stops the
	// manager once its account is created, and checks what the kill left.
	killedAfterFirstPost := func(name string) (string, *corev1.ServiceAccount, *scimv1.ServiceIdentity) {
		ns := readyTargetNamespace(ctx)
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner-" + name}}
		Expect(k8s.Create(ctx, sa)).To(Succeed())
		si := newIdentity(ns, name, "acme")
		si.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}}
		// A kill right after the POST, played by status writes the API server refuses until
		// the manager is stopped: the account exists, nothing after the POST is written.
		allow := refuseStatusWrites(ctx, ns)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(accountsWithExternalID(ns, name)).ShouldNot(BeEmpty())
		killManager()
		allow()

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		Expect(si.Status.Targets).To(BeEmpty(), "no status write before the POST")
		Expect(si.Status.Conditions).To(BeEmpty())
		Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer))
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.WorkloadAtCreationAnnotation, "ServiceAccount/"+sa.Name+"/"+string(sa.UID)),
			"the owner stamped with the finalizer, before the POST")
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.TargetsAtCreationAnnotation, "ScimTarget/acme"), "and the targets")
		Expect(accountsWithExternalID(ns, name)()).To(ConsistOf(HaveKeyWithValue("active", true)))
		return ns, sa, si
	}
	It("is adopted when the spec still names the target", func() {
		ns, _, si := killedAfterFirstPost("kept")
		id := accountsWithExternalID(ns, "kept")()[0]["id"]
		startManager()
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(statusEntry(ctx, si, "acme")(Default)).To(HaveField("ID", id), "the account the POST made, found by its externalId")
		Expect(accountsWithExternalID(ns, "kept")()).To(HaveLen(1))
	})

	It("is deprovisioned at the restart when the targetRef was removed meanwhile, through the targets stamped at creation", func() {
		ns, _, si := killedAfterFirstPost("dropped")
		update(ctx, si, func(s *scimv1.ServiceIdentity) { s.Spec.TargetRefs = []scimv1.TargetReference{{Name: "elsewhere"}} })
		startManager()
		// Neither the spec nor the status names the account's target any more; the stamp does,
		// and the pass deprovisions it there as a dropped target.
		Eventually(activeAccounts(ns, "dropped"), "10s").Should(BeEmpty())
		// The pass deactivates the account, then writes its status: the entry the first status
		// write recorded from the stamp goes with that write, a moment after the account.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Status.Targets).NotTo(ContainElement(HaveField("Name", "acme")))
		}).Should(Succeed())
		Consistently(activeAccounts(ns, "dropped"), "1s").Should(BeEmpty())
	})

	It("is revoked when the owner was deleted with orphan propagation before the restart, through the owner stamped at creation", func() {
		ns, sa, si := killedAfterFirstPost("orphaned")
		// What the garbage collector does for --cascade=orphan: the ownerReference goes, then the owner.
		update(ctx, si, func(s *scimv1.ServiceIdentity) { s.OwnerReferences = nil })
		Expect(k8s.Delete(ctx, sa)).To(Succeed())
		startManager()
		Eventually(activeAccounts(ns, "orphaned"), "10s").Should(BeEmpty())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring(sa.Name))
		Consistently(activeAccounts(ns, "orphaned"), "1s").Should(BeEmpty(), "and not provisioned again")
	})
})
