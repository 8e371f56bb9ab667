package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/controller/identity"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/governance"
	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// Adversarial review of "Trust round 3" (issue 20), as a hostile tenant and as a hostile SCIM
// provider. Every spec here failed on the branch under review: each is a break the lead fixes.

// usersOn lists the accounts of a backend carrying the identity's externalId.
func usersOn(backend *scimserver.Server, ns, name string) []map[string]any {
	return backend.UsersWhere("externalId", externalIDOf(ns, name))
}

// activeUsersOn counts the identity's accounts on backend that are still active; an account
// deleted (withdrawal under Delete) counts as off, just as a deactivated one does.
func activeUsersOn(backend *scimserver.Server, ns, name string) int {
	n := 0
	for _, u := range usersOn(backend, ns, name) {
		if u["active"] != false {
			n++
		}
	}
	return n
}

var _ = Describe("Attacks on revocation evidence, the breaker's shares and the operator's memory", func() {
	ctx := context.Background()
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("attack: Orphan on a dropped targetRef hides the account from the kill switch and from the withdrawal", func() {
		ns := newNamespace(ctx)
		srv, backend := hostileProvider(nil) // an honest, separate application for the shared target
		cst := clusterTarget(ctx, "lenient", []string{ns}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.URL + scimserver.BasePath
			// The admin lets identities choose Orphan. The guarantee says that whatever is allowed,
			// Orphan never keeps an account active through a suspension or after a withdrawal.
			c.Spec.Guardrails = &scimv1.Guardrails{DeletionPolicies: []scimv1.DeletionPolicy{
				scimv1.DeletionPolicyDelete, scimv1.DeletionPolicyDeactivate, scimv1.DeletionPolicyOrphan}}
		})
		fastTarget(ctx, ns, "own")
		si := newIdentity(ns, "hider", "own")
		si.Spec.TargetRefs = append(si.Spec.TargetRefs, scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: cst.Name})
		si.Spec.DeletionPolicy = ptr.To(scimv1.DeletionPolicyOrphan)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(usersOn(backend, ns, "hider")).To(HaveLen(1))

		By("the tenant drops the shared target from its spec: Orphan leaves the account, and its entry stays on record")
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.TargetRefs = []scimv1.TargetReference{{Name: "own"}}
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "hider"), si)).To(Succeed())
			g.Expect(si.Status.Targets).To(ContainElement(SatisfyAll(HaveField("Kind", scimv1.KindClusterScimTarget),
				HaveField("Revocation.Result", scimv1.RevocationOrphaned))), "the account left active is no longer on record")
		}).Should(Succeed())
		Expect(usersOn(backend, ns, "hider")[0]["active"]).To(BeTrue())

		By("the responder pulls the kill switch, and the admin withdraws the namespace from the shared target")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		allowOnly(ctx, cst, "somebody-else")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "hider"), si)).To(Succeed())
			for _, e := range si.Status.Targets {
				off, why := e.AccountOff()
				g.Expect(off).To(BeTrue(), why)
			}
		}).Should(Succeed(), "kubectl scim revoke waits for this")
		// kubectl scim revoke now prints "Every target confirmed: the account is inactive".
		// Suspension deactivates; the withdrawal that follows may delete (the target's policy):
		// either way no account of the identity may be left active.
		Eventually(func() int { return activeUsersOn(backend, ns, "hider") }, "15s").Should(BeZero(),
			"every status entry says the account is off (revoke: 'Every target confirmed'), yet the account on the shared "+
				"target is active: suspended and withdrawn")
	})

	It("attack: a provider that answers 204 to the suspension's PATCH has the account called off while it is active", func() {
		ns := newNamespace(ctx)
		var armed atomic.Bool
		srv, backend := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
			if armed.Load() && (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/Users/") {
				w.WriteHeader(http.StatusNoContent) // "applied" (RFC 7644 §3.5.2 allows 204), but nothing changed
				return true
			}
			return false
		})
		t := fastTarget(ctx, ns, "nocontent", func(t *scimv1.ScimTarget) { t.Spec.Endpoint = srv.URL + scimserver.BasePath })
		si := newIdentity(ns, "ghost-off", t.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		armed.Store(true)
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		// The suspension was tried (today it is recorded Suspended on the PATCH's 204 alone).
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "ghost-off"), si)).To(Succeed())
			g.Expect(si.Status.Targets).To(HaveLen(1))
			g.Expect(si.Status.Targets[0].State).To(BeElementOf(scimv1.TargetStateSuspended, scimv1.TargetStateError))
		}).Should(Succeed())
		requestResync(ctx, si) // a GET shows the account active: does anything notice?
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "ghost-off"), si)).To(Succeed())
			off, why := si.Status.Targets[0].AccountOff()
			active := usersOn(backend, ns, "ghost-off")[0]["active"]
			g.Expect(off && active == true).To(BeFalse(),
				"AccountOff (revoke, why, inventory) says %q while the account is active on the target: no read ever showed active=false", why)
		}, "3s", "250ms").Should(Succeed())
	})

	It("attack: a hostile cluster provider lists orphans naming made-up namespaces to grow the breaker's status and memory", func() {
		served := newNamespace(ctx)
		srv, backend := hostileProvider(nil)
		cst := clusterTarget(ctx, "inflated", []string{served}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.URL + scimserver.BasePath
			c.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyDeactivate, Interval: scimv1.DurationOf(time.Hour)}
			c.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 100, Interval: scimv1.DurationOf(time.Hour)}
		})
		const ghosts = 40
		for i := range ghosts {
			backend.Users.Put(map[string]any{"userName": fmt.Sprintf("ghost-%d", i),
				"externalId": externalIDOf(fmt.Sprintf("made-up-%d-%s", i, served), "x"), "active": true})
		}
		sweepNow(ctx, cst)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf("", cst.Name), cst)).To(Succeed())
			g.Expect(cst.Status.Orphans).NotTo(BeNil())
			g.Expect(cst.Status.Orphans.Count).To(BeNumerically(">=", ghosts))
		}).Should(Succeed())
		n := 0
		if cst.Status.CircuitBreaker != nil {
			n = len(cst.Status.CircuitBreaker.Namespaces)
		}
		Expect(n).To(BeNumerically("<=", 1),
			"the provider chose %d namespaces that do not exist; each got a share of the breaker (a status write, a row in "+
				"status.circuitBreaker.namespaces with no bound, a pool in memory never forgotten)", n)
	})

	It("attack: a tenant that used up its own breaker share stops the orphan clean-up of every other namespace", func() {
		tenantA, tenantB := newNamespace(ctx), newNamespace(ctx)
		cst := clusterTarget(ctx, "orphan-stop", []string{tenantA, tenantB}, func(c *scimv1.ClusterScimTarget) {
			// The default orphan policy of a shared target: Deactivate the orphans of the allowed namespaces.
			c.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 1, Interval: scimv1.DurationOf(time.Hour)}
		})
		forceOrphan := func(si *scimv1.ServiceIdentity) {
			annotate(ctx, si, scimv1.ForceOrphanAnnotation, "true")
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
		}
		early := clusterIdentity(tenantA, "a-early", cst.Name) // listed first by the provider
		spend := clusterIdentity(tenantA, "a-spend", cst.Name)
		victim := clusterIdentity(tenantB, "b-left", cst.Name)
		for _, si := range []*scimv1.ServiceIdentity{early, spend, victim} {
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}

		By("tenant A spends its own share (one deletion) and leaves one active orphan of its own")
		Expect(k8s.Delete(ctx, spend)).To(Succeed())
		Eventually(gone(ctx, spend)).Should(BeTrue())
		Expect(accountsWithExternalID(tenantA, "a-spend")()).To(BeEmpty())
		forceOrphan(early)

		By("tenant B's identity goes without revocation (force-orphan): the next sweep must deactivate its account")
		forceOrphan(victim)
		Expect(accountOf(tenantB, "b-left")["active"]).To(BeTrue())
		sweepNow(ctx, cst)
		Eventually(func() any { return accountOf(tenantB, "b-left")["active"] }, "5s").Should(Equal(false),
			"tenant A's exhausted share paused the clean-up of tenant B's orphan: the sweep stops at the first paused orphan")
	})

	It("attack: identities churned through force-orphan leave their memory in the operator", func() {
		ns := newNamespace(ctx)
		fastTarget(ctx, ns, "own")
		// A second identity reconciler, driven by hand, to look at what it keeps in memory.
		r2 := freshIdentityReconciler()
		const churn = 5
		for i := range churn {
			si := newIdentity(ns, fmt.Sprintf("churn-%d", i), "own")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			requestResync(ctx, si)
			req := reconcile.Request{NamespacedName: keyOf(ns, si.Name)}
			Eventually(func() int {
				_, _ = r2.Reconcile(ctx, req)
				return r2.Remembered()
			}).Should(BeNumerically(">=", 1))
			annotate(ctx, si, scimv1.ForceOrphanAnnotation, "true") // the tenant's own escape hatch
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
			_, _ = r2.Reconcile(ctx, req) // what the controller does when it sees the identity gone
		}
		Expect(r2.Remembered()).To(BeZero(),
			"%d identities are gone, yet the reconciler still remembers %d things of them: a tenant "+
				"looping create/delete grows the operator's memory without bound", churn, r2.Remembered())
	})
})

// freshIdentityReconciler is an identity reconciler of a process that remembers nothing, driven
// by hand beside the suite's manager (it reads through the API server, not a cache).
func freshIdentityReconciler() *identity.Reconciler {
	builder := connect.NewSecretClientBuilder(k8s, 5*time.Second)
	builder.Guard = connect.NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
	flags := targets.NewSweepFlags(nil)
	return &identity.Reconciler{Client: k8s, APIReader: k8s, Clients: builder, Recorder: events.NewFakeRecorder(1000),
		ClusterID: testClusterID, ClusterResourceNamespace: operatorNS, Flags: flags,
		Governor: &governance.Governor{Client: k8s, Clients: builder, Recorder: events.NewFakeRecorder(1000),
			ClusterID: testClusterID, ClusterResourceNamespace: operatorNS},
		Deprovisioner: &account.Deprovisioner{Client: k8s, APIReader: k8s, Clients: builder, ClusterID: testClusterID,
			ClusterResourceNamespace: operatorNS, Flags: flags, Dialects: &dialect.Observed{}}}
}
