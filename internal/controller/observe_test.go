package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// writes counts the requests on srv that could change something: POST, PUT, PATCH, DELETE.
func writes(srv *scimserver.Server) map[string]int {
	out := map[string]int{}
	for k, n := range srv.RequestCounts() {
		if method, _, _ := strings.Cut(k, " "); method != "GET" {
			out[k] = n
		}
	}
	return out
}

// planOf is the plan recorded for the identity's account on its only target.
func planOf(ctx context.Context, ns, name string) func(Gomega) *scimv1.AccountPlan {
	return func(g Gomega) *scimv1.AccountPlan {
		si := &scimv1.ServiceIdentity{}
		g.Expect(k8s.Get(ctx, keyOf(ns, name), si)).To(Succeed())
		g.Expect(si.Status.Targets).To(HaveLen(1))
		return si.Status.Targets[0].Plan
	}
}

func planAction(a scimv1.PlanAction) OmegaMatcher {
	return And(Not(BeNil()), HaveField("Action", a))
}

var _ = Describe("Observe mode", func() {
	ctx := context.Background()

	It("runs the lifecycle against a target in Observe mode with zero writes, then applies the plan it showed when switched to Enforce", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		// What the application already holds: a drifted account of ours, the active account of
		// an identity to be suspended, of one that expired, and an orphan of ours.
		driftyID := srv.Users.Put(map[string]any{"userName": "drifty." + ns, "externalId": externalIDOf(ns, "drifty"),
			"displayName": "changed by hand", "active": true})
		pausedID := srv.Users.Put(map[string]any{"userName": "paused." + ns, "externalId": externalIDOf(ns, "paused"), "active": true})
		expiredID := srv.Users.Put(map[string]any{"userName": "expired." + ns, "externalId": externalIDOf(ns, "expired"), "active": true})
		ghostID := srv.Users.Put(map[string]any{"userName": "ghost." + ns, "externalId": externalIDOf(ns, "ghost"), "active": true})
		srv.Groups.Put(map[string]any{"displayName": "readers-" + ns})
		srv.ResetCounts()

		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Mode = scimv1.ModeObserve
			t.Spec.DeletionPolicy = scimv1.DeletionPolicyDelete
			t.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyDelete, Interval: scimv1.DurationOf(time.Hour)}
			t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 1}
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		newbie := newIdentity(ns, "newbie", "app")
		newbie.Spec.Groups = []string{"readers-" + ns}
		drifty := newIdentity(ns, "drifty", "app")
		drifty.Spec.DisplayName = "Drifty"
		paused := newIdentity(ns, "paused", "app")
		paused.Spec.Suspend = true
		expired := newIdentity(ns, "expired", "app")
		past := scimv1.Timestamp(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
		expired.Spec.ExpiresAt = &past
		for _, si := range []*scimv1.ServiceIdentity{newbie, drifty, paused, expired} {
			Expect(k8s.Create(ctx, si)).To(Succeed())
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent",
			Annotations: map[string]string{scimv1.AnnotationTargets: "app"}}}
		Expect(k8s.Create(ctx, sa)).To(Succeed())

		By("each identity shows what would be done, Ready with reason Observed")
		Eventually(planOf(ctx, ns, "newbie")).Should(And(planAction(scimv1.PlanCreate), HaveField("GroupsAdded", ConsistOf("readers-"+ns))))
		Eventually(planOf(ctx, ns, "drifty")).Should(And(planAction(scimv1.PlanUpdate),
			HaveField("Changes", ContainElement(scimv1.AttributeChange{Path: "displayName", Current: `"changed by hand"`, Desired: `"Drifty"`}))))
		Eventually(planOf(ctx, ns, "paused")).Should(planAction(scimv1.PlanDeactivate))
		Eventually(planOf(ctx, ns, "expired")).Should(planAction(scimv1.PlanDelete))
		Eventually(planOf(ctx, ns, "serviceaccount-agent")).Should(planAction(scimv1.PlanCreate))
		Eventually(get(ctx, newbie)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonObserved))

		By("the workload's deletion and an identity's deletion record what revocation would do, and let go")
		Expect(k8s.Delete(ctx, sa)).To(Succeed())
		Eventually(get(ctx, &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "serviceaccount-agent"}})).
			Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(k8s.Delete(ctx, drifty)).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(drifty), &scimv1.ServiceIdentity{}) }).
			Should(Satisfy(func(err error) bool { return client.IgnoreNotFound(err) == nil && err != nil }))
		Eventually(eventReasons(ctx, ns, "drifty")).Should(ContainElement("WouldDeprovision"))

		By("a sweep plans the orphans and the breaker's verdict on the target")
		update(ctx, t, func(t *scimv1.ScimTarget) {
			t.Annotations = map[string]string{scimv1.SweepRequestedAnnotation: "observe"}
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Plan).NotTo(BeNil())
			g.Expect(t.Status.Plan.Actions).To(ContainElements(
				scimv1.PlanCount{Action: scimv1.PlanCreate, Count: 1}, scimv1.PlanCount{Action: scimv1.PlanDeactivate, Count: 1}))
			g.Expect(t.Status.Plan.Orphans).To(BeNumerically(">=", 1))
			g.Expect(t.Status.Plan.OrphanAction).To(Equal("Delete"))
			g.Expect(t.Status.Plan.Breaker).To(HavePrefix("would pause"))
		}).Should(Succeed())

		By("nothing was written to the application")
		Expect(writes(srv)).To(BeEmpty())
		for _, id := range []string{driftyID, pausedID, expiredID, ghostID} {
			Expect(userOn(srv, id)).To(HaveKeyWithValue("active", true))
		}
		Expect(userOn(srv, driftyID)).To(HaveKeyWithValue("displayName", "changed by hand"))
		Expect(srv.UsersWhere("externalId", externalIDOf(ns, "newbie"))).To(BeEmpty())

		By("switched to Enforce, what the plan showed is done")
		update(ctx, t, func(t *scimv1.ScimTarget) {
			t.Spec.Mode = scimv1.ModeEnforce
			t.Spec.CircuitBreaker = nil
			t.Annotations[scimv1.SweepRequestedAnnotation] = "enforce"
		})
		Eventually(accountsWithExternalIDOn(srv, ns, "newbie")).Should(HaveLen(1))
		Eventually(func() any { return userOn(srv, pausedID)["active"] }).Should(BeFalse())
		Eventually(func() map[string]any { return userOn(srv, expiredID) }).Should(BeNil())
		Eventually(func() map[string]any { return userOn(srv, ghostID) }).Should(BeNil(), "the orphan, by its policy")
		Eventually(func() map[string]any { return userOn(srv, driftyID) }).Should(BeNil(),
			"the account of the identity deleted in Observe mode is an orphan now, and goes by the orphan policy")
		Eventually(get(ctx, newbie)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned))
		Eventually(planOf(ctx, ns, "newbie")).Should(BeNil())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Plan).To(BeNil())
		}).Should(Succeed())
	})

	It("plans a Conflict, not a Create, for a userName another system's account holds", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		srv.Users.Put(map[string]any{"userName": "hr-sync." + ns, "externalId": "other-cluster/hr-sync", "active": true})
		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Mode = scimv1.ModeObserve
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(k8s.Create(ctx, newIdentity(ns, "hr-sync", "app"))).To(Succeed())
		Eventually(planOf(ctx, ns, "hr-sync")).Should(And(planAction(scimv1.PlanConflict),
			HaveField("Reason", ContainSubstring("another externalId"))))
		Expect(writes(srv)).To(BeEmpty())
	})

	It("never writes through the client of an Observe target, whatever asks", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Mode = scimv1.ModeObserve
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		si := newIdentity(ns, "bot", "app")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(planOf(ctx, ns, "bot")).Should(planAction(scimv1.PlanCreate))
		By("the kill switch in Observe mode plans, and kubectl scim's evidence rule does not call it off")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Status.Targets).To(HaveLen(1))
			off, _ := si.Status.Targets[0].AccountOff()
			g.Expect(off).To(BeFalse(), "Observe mode writes nothing: no account is called off on a plan's word")
		}).Should(Succeed())
		Expect(writes(srv)).To(BeEmpty())
	})
})

// accountsWithExternalIDOn lists srv's accounts carrying the identity's externalId.
func accountsWithExternalIDOn(srv *scimserver.Server, ns, name string) func() []map[string]any {
	return func() []map[string]any { return srv.UsersWhere("externalId", externalIDOf(ns, name)) }
}

var _ = Describe("Observe mode on a provider with 1,000 hand-made accounts", func() {
	ctx := context.Background()

	It("plans in one sweep's requests, and imported identities cost two reads each, once per interval", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		ids := make([]string, 1000)
		for i := range ids {
			ids[i] = srv.Users.Put(map[string]any{"userName": fmt.Sprintf("legacy-%04d.%s", i, ns), "active": true})
		}
		srv.ResetCounts()
		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Mode = scimv1.ModeObserve
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Sweep).NotTo(BeNil())
			g.Expect(t.Status.Plan).NotTo(BeNil())
			g.Expect(t.Status.Plan.Orphans).To(BeZero())
		}).Should(Succeed())
		sweep := srv.RequestCounts()
		Expect(sweep["GET Users?filter"]).To(BeNumerically("<=", 2), "the sweep lists this cluster's accounts: none yet, one page")
		Expect(writes(srv)).To(BeEmpty())

		By("50 identities imported with spec.adopt plan Adopt with a lookup and a read each")
		srv.ResetCounts()
		const imported = 50
		for i := range imported {
			si := newIdentity(ns, fmt.Sprintf("legacy-%04d", i), "app")
			si.Spec.UserName = fmt.Sprintf("legacy-%04d.%s", i, ns)
			si.Spec.Adopt = &scimv1.AdoptAccount{ID: ids[i], UserName: si.Spec.UserName}
			Expect(k8s.Create(ctx, si)).To(Succeed())
		}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			update(ctx, t, func(t *scimv1.ScimTarget) {
				t.Annotations = map[string]string{scimv1.SweepRequestedAnnotation: time.Now().String()}
			})
			g.Expect(t.Status.Plan).NotTo(BeNil())
			g.Expect(t.Status.Plan.Actions).To(ContainElement(scimv1.PlanCount{Action: scimv1.PlanAdopt, Count: imported}))
		}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
		counts := srv.RequestCounts()
		AddReportEntry("observe: requests", fmt.Sprintf("sweep of 1,000 hand-made accounts: %v; %d imported identities planned: %v", sweep, imported, counts))
		Expect(counts["GET Users/{id}"]).To(BeNumerically("<=", imported), "one read of the named account each")
		Expect(counts["GET Users?filter"]-counts["GET Users/{id}"]).To(BeNumerically("<=", imported+20), "one lookup each, plus the sweeps' pages")
		Expect(writes(srv)).To(BeEmpty())
	})
})
