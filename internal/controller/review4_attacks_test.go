package controller

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// Review 4 (issue 23: Observe mode, plan and import), played as a hostile tenant and a hostile
// SCIM provider. Each spec asserts what must hold: on f7c9fe0, before the fixes, all eleven
// failed (the attack worked); they pass since. Run with
//
//	-ginkgo.focus 'review4'

// reasonNotes are "Reason: note" of the Events about one object.
func reasonNotes(ctx context.Context, ns, regarding string) func(Gomega) []string {
	return eventsAbout(ctx, ns, regarding, func(e eventsv1.Event) string { return e.Reason + ": " + e.Note })
}

// claimsOff lists what the identity's status and Events say that calls its account
// deprovisioned or deactivated (words the Events and conditions use for a done revocation).
func claimsOff(ctx context.Context, si *scimv1.ServiceIdentity) []string {
	GinkgoHelper()
	cur := &scimv1.ServiceIdentity{}
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), cur)).To(Succeed())
	words := []string{"was deprovisioned", "accounts deprovisioned", "account deprovisioned", "every account is deactivated",
		"any account here is deactivated", "deprovisioned on"}
	says := func(where, text string) []string {
		var out []string
		for _, w := range words {
			if strings.Contains(text, w) {
				out = append(out, fmt.Sprintf("%s says %q: %s", where, w, text))
			}
		}
		return out
	}
	var out []string
	for _, c := range cur.Status.Conditions {
		out = append(out, says("condition "+c.Type, c.Message)...)
	}
	for _, e := range cur.Status.Targets {
		out = append(out, says("status.targets["+e.Kind+"/"+e.Name+"].message", e.Message)...)
	}
	if cur.Status.DeprovisionedAt != nil {
		out = append(out, "status.deprovisionedAt is set")
	}
	list := &eventsv1.EventList{}
	Expect(k8s.List(ctx, list, client.InNamespace(si.Namespace))).To(Succeed())
	for _, e := range list.Items {
		if e.Regarding.Name == si.Name {
			out = append(out, says("Event "+e.Reason, e.Note)...)
		}
	}
	return out
}

var _ = Describe("Review 4: Observe mode, spec.adopt and the plan", func() {
	ctx := context.Background()

	// withdrawnWhileObserved: a ClusterScimTarget the admin put in Observe mode, then withdrew
	// the tenant's namespace from. It returns the target, the identity and its account's id.
	withdrawnWhileObserved := func(srv *scimserver.Server, ns, other string) (*scimv1.ClusterScimTarget, *scimv1.ServiceIdentity, string) {
		GinkgoHelper()
		cst := clusterTarget(ctx, "obs-withdraw", []string{ns, other}, func(c *scimv1.ClusterScimTarget) { c.Spec.Endpoint = srv.Endpoint() })
		si := clusterIdentity(ns, "bot", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned))
		accts := accountsWithExternalIDOn(srv, ns, "bot")()
		Expect(accts).To(HaveLen(1))
		id := accts[0]["id"].(string)
		srv.ResetCounts()

		By("the admin puts the shared target in Observe mode (a migration, a dry run), then withdraws the namespace")
		update(ctx, cst, func(c *scimv1.ClusterScimTarget) { c.Spec.Mode = scimv1.ModeObserve })
		Eventually(planOf(ctx, ns, "bot")).ShouldNot(BeNil())
		allowOnly(ctx, cst, other)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonNamespaceForbidden))
		Expect(writes(srv)).To(BeEmpty(), "Observe mode writes nothing (allowed)")
		Expect(userOn(srv, id)).To(HaveKeyWithValue("active", true))
		return cst, si, id
	}

	It("review4 attack: a namespace withdrawn while its ClusterScimTarget observes is told its account was deprovisioned", func() {
		srv := ownServer(testToken)
		ns, other := newNamespace(ctx), newNamespace(ctx)
		_, si, id := withdrawnWhileObserved(srv, ns, other)
		// Events are sent asynchronously: nothing may claim it for a while.
		Consistently(func(g Gomega) {
			g.Expect(userOn(srv, id)).To(HaveKeyWithValue("active", true))
			g.Expect(claimsOff(ctx, si)).To(BeEmpty(), "the account is active on the target, and nothing may call it deprovisioned")
		}, "2s", "200ms").Should(Succeed())
		GinkgoWriter.Printf("Events: %v\n", reasonNotes(ctx, ns, "bot")(Default))
	})

	It("review4 attack: a namespace withdrawn while its ClusterScimTarget observes keeps its account active once the target is enforced", func() {
		srv := ownServer(testToken)
		ns, other := newNamespace(ctx), newNamespace(ctx)
		cst, _, id := withdrawnWhileObserved(srv, ns, other)

		By("the admin enforces the target again: the withdrawal the plan showed must now be applied")
		update(ctx, cst, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Mode = scimv1.ModeEnforce
			c.Annotations = map[string]string{scimv1.SweepRequestedAnnotation: "enforce"}
		})
		Eventually(func() map[string]any { return userOn(srv, id) }).WithTimeout(20*time.Second).Should(
			Or(BeNil(), HaveKeyWithValue("active", false)),
			"the namespace's access was withdrawn and the target enforced, yet the account is still active on the shared application")
	})

	It("review4 attack: an identity that expires on an Observe target is reported deprovisioned while its account is active", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Mode = scimv1.ModeObserve
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := srv.Users.Put(map[string]any{"userName": "exp." + ns, "externalId": externalIDOf(ns, "exp"), "active": true})
		si := newIdentity(ns, "exp", "app")
		past := scimv1.Timestamp(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
		si.Spec.ExpiresAt = &past
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue))
		Eventually(planOf(ctx, ns, "exp")).Should(planAction(scimv1.PlanDelete))
		Consistently(func(g Gomega) {
			g.Expect(userOn(srv, id)).To(HaveKeyWithValue("active", true), "Observe mode writes nothing (allowed)")
			g.Expect(claimsOff(ctx, si)).To(BeEmpty(), "the account is active on the target, and nothing may call it deprovisioned")
		}, "2s", "200ms").Should(Succeed())
	})

	It("review4 attack: the kill switch on an Observe target says every account is deactivated while it is active", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Mode = scimv1.ModeObserve
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := srv.Users.Put(map[string]any{"userName": "killed." + ns, "externalId": externalIDOf(ns, "killed"), "active": true})

		By("the responder suspends an identity whose spec cannot be provisioned (the kill switch's own path)")
		si := newIdentity(ns, "killed", "app")
		si.Spec.Suspend = true
		si.Spec.WorkloadRef = &scimv1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "no-such-deployment"}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue))
		Consistently(func(g Gomega) {
			g.Expect(userOn(srv, id)).To(HaveKeyWithValue("active", true), "Observe mode writes nothing (allowed)")
			g.Expect(claimsOff(ctx, si)).To(BeEmpty(), "the account is active on the target, and nothing may call it deactivated")
		}, "2s", "200ms").Should(Succeed())
	})

	It("review4 attack: spec.adopt on a shared ClusterScimTarget (adoption Never, no group allowed) reactivates a disabled hand-made account and keeps it in the admins' group", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "adopt-grp", []string{ns}, func(c *scimv1.ClusterScimTarget) { c.Spec.Endpoint = srv.Endpoint() })
		Expect(cst.Spec.Adoption).To(Equal(scimv1.AdoptionNever))
		// Made by the application's admins, by hand: no externalId, disabled, in their group.
		acct := srv.Users.Put(map[string]any{"userName": "deploy." + ns, "displayName": "prod deployer (disabled by the app's admins)", "active": false})
		srv.Groups.Put(map[string]any{"displayName": "prod-admins-" + ns, "members": []any{map[string]any{"value": acct}}})

		By("the tenant names the account in spec.adopt (its id is all it needs)")
		si := clusterIdentity(ns, "deploy", cst.Name)
		si.Spec.Adopt = &scimv1.AdoptAccount{ID: acct, UserName: "deploy." + ns}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Status.ObservedGeneration).To(Equal(si.Generation))
		}).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(adoptionTaken(srv, ns, acct)).To(BeEmpty()) }, "2s", "200ms").Should(Succeed())
	})

	It("review4 attack: spec.adopt takes over a person's account on a ClusterScimTarget that allows any userName but whose adoption is Never", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "adopt-any", []string{ns}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.Endpoint()
			c.Spec.Guardrails = &scimv1.Guardrails{UserNames: scimv1.UserNamesAny}
		})
		Expect(cst.Spec.Adoption).To(Equal(scimv1.AdoptionNever))
		person := srv.Users.Put(map[string]any{"userName": "ceo@corp.example", "displayName": "The CEO", "active": true})

		si := clusterIdentity(ns, "grab", cst.Name)
		si.Spec.UserName = "ceo@corp.example"
		si.Spec.Adopt = &scimv1.AdoptAccount{ID: person, UserName: "ceo@corp.example"}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		// What the security model promises for "identity claims a person's userName".
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonAccountConflict),
			"the person's account was taken over")
		Consistently(func() map[string]any { return userOn(srv, person) }, "2s").ShouldNot(HaveKey("externalId"))
	})

	It("review4 attack: spec.adopt shows a tenant the userName of any account of a shared ClusterScimTarget, by its id", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "adopt-probe", []string{ns}, func(c *scimv1.ClusterScimTarget) { c.Spec.Endpoint = srv.Endpoint() })
		person := srv.Users.Put(map[string]any{"userName": "jane.doe@corp.example", "displayName": "Jane Doe", "active": true})

		By("the tenant's identity, within the guardrails (userName probe.<ns>), names someone's account id in spec.adopt")
		si := clusterIdentity(ns, "probe", cst.Name)
		si.Spec.Adopt = &scimv1.AdoptAccount{ID: person, UserName: "probe." + ns}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue))
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			var shown []string
			for _, c := range si.Status.Conditions {
				shown = append(shown, c.Message)
			}
			for _, e := range si.Status.Targets {
				shown = append(shown, e.Message)
			}
			shown = append(shown, reasonNotes(ctx, ns, "probe")(g)...)
			g.Expect(strings.Join(shown, "\n")).NotTo(ContainSubstring("jane.doe"),
				"the tenant read the userName of a person's account of the shared application through the admin's credentials")
		}, "1s", "200ms").Should(Succeed())
	})

	It("review4 attack: switching a target to Observe does not stop the orphan clean-up already under way", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		const orphans = 30
		for i := range orphans {
			srv.Users.Put(map[string]any{"userName": fmt.Sprintf("ghost-%02d.%s", i, ns), "externalId": externalIDOf(ns, fmt.Sprintf("ghost-%02d", i)), "active": true})
		}
		var mu sync.Mutex
		var writesAt []time.Time
		srv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if r.Method == http.MethodGet {
				return nil
			}
			mu.Lock()
			writesAt = append(writesAt, time.Now())
			mu.Unlock()
			return &scimserver.Fault{Latency: 150 * time.Millisecond} // a provider that writes slowly
		})
		t := createTarget(ctx, ns, "app", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyDelete, Interval: scimv1.DurationOf(time.Hour)}
		})
		Eventually(func() int { mu.Lock(); defer mu.Unlock(); return len(writesAt) }).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 2))

		By("the admin sees deletions start and switches the target to Observe: every write must stop")
		update(ctx, t, func(t *scimv1.ScimTarget) { t.Spec.Mode = scimv1.ModeObserve })
		switched := time.Now()
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))
		}).Should(Succeed())
		// No write may arrive more than a second after the switch, for as long as the clean-up
		// would have gone on.
		Consistently(func(g Gomega) {
			mu.Lock()
			late := 0
			for _, at := range writesAt {
				if at.After(switched.Add(time.Second)) {
					late++
				}
			}
			total := len(writesAt)
			mu.Unlock()
			g.Expect(late).To(BeZero(), "PATCH and DELETE requests went on after the target was switched to Observe (%d writes in all)", total)
		}, "8s", "250ms").Should(Succeed())
		left := 0
		for _, u := range srv.Users.All() {
			if strings.HasPrefix(fmt.Sprint(u["externalId"]), externalIDOf(ns, "ghost-")) {
				left++
			}
		}
		GinkgoWriter.Printf("%d of %d orphans left after the switch to Observe\n", left, orphans)
	})

	// Deleting an identity in Observe mode lets it go without a call (the account stays as it
	// was); once enforced, the account is an orphan of the target and its orphan policy decides:
	// a ClusterScimTarget's default, Deactivate, leaves no such account active. (An admin who
	// set Report sees it in status.orphans and in the plan before enforcing.)
	It("review4 attack: an identity deleted while its ClusterScimTarget observes leaves its account active for good once the target is enforced", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "obs-delete", []string{ns}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.Endpoint()
			c.Spec.Mode = scimv1.ModeObserve // the orphan policy is the ClusterScimTarget's default: Deactivate
		})
		id := srv.Users.Put(map[string]any{"userName": "leaver." + ns, "externalId": externalIDOf(ns, "leaver"), "userType": "ServiceAccount", "active": true})
		si := clusterIdentity(ns, "leaver", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(planOf(ctx, ns, "leaver")).ShouldNot(BeNil())

		By("the tenant deletes the identity: the plan says Delete, the finalizer goes without a call")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Eventually(reasonNotes(ctx, ns, "leaver")).Should(ContainElement(HavePrefix("WouldDeprovision")))

		By("the admin enforces the target: the revocation the plan showed must be made")
		update(ctx, cst, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Mode = scimv1.ModeEnforce
			c.Annotations = map[string]string{scimv1.SweepRequestedAnnotation: "enforce"}
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cst), cst)).To(Succeed())
			g.Expect(cst.Status.Sweep).NotTo(BeNil())
			g.Expect(cst.Status.Sweep.LastHandledRequest).To(Equal("enforce"))
		}).WithTimeout(20 * time.Second).Should(Succeed())
		Eventually(func() map[string]any { return userOn(srv, id) }).WithTimeout(10*time.Second).Should(
			Or(BeNil(), HaveKeyWithValue("active", false)),
			"the identity was deleted, its plan said Delete, the target is enforced: the account is still active with nothing to revoke it")
	})
	It("review4 attack: an account renamed to a person's between spec.adopt's read and the stamp is adopted anyway (the 412 re-read checks only the externalId)", func() {
		srv := ownServer(testToken) // ETags supported: the adoption's PATCH carries If-Match
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "adopt-race", []string{ns}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.Endpoint()
			c.Spec.Adoption = scimv1.AdoptionNamed // the admin lets imported accounts be adopted
		})
		acct := srv.Users.Put(map[string]any{"userName": "legacy." + ns, "active": true})

		By("an application admin gives the account to a person just as the operator adopts it")
		renamed := make(chan struct{})
		srv.Faults.Add(scimserver.Once(func(r *http.Request) *scimserver.Fault {
			if r.Method == http.MethodGet || !strings.Contains(r.URL.Path, acct) {
				return nil
			}
			srv.Users.Mutate(acct, func(attrs map[string]any) {
				attrs["userName"] = "jane.doe@corp.example"
				attrs["displayName"] = "Jane Doe"
			})
			close(renamed)
			return &scimserver.Fault{} // served as it is: its If-Match no longer matches
		}))
		si := clusterIdentity(ns, "legacy", cst.Name)
		si.Spec.Adopt = &scimv1.AdoptAccount{ID: acct, UserName: "legacy." + ns}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(renamed).WithTimeout(15 * time.Second).Should(BeClosed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Status.ObservedGeneration).To(Equal(si.Generation))
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			u := userOn(srv, acct)
			g.Expect(u).NotTo(HaveKey("externalId"), "Jane Doe's account, renamed since spec.adopt's read, was stamped with the tenant's externalId")
			g.Expect(u).To(HaveKeyWithValue("userName", "jane.doe@corp.example"), "Jane Doe's account was renamed by the adoption")
		}, "2s", "200ms").Should(Succeed())
	})

	It("review4 attack: a group dropped from the spec while the target observes stays joined once it is enforced, even after the guardrails stop allowing it", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		group := "ops-admin-" + ns
		srv.Groups.Put(map[string]any{"displayName": group})
		cst := clusterTarget(ctx, "obs-groups", []string{ns}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.Endpoint()
			c.Spec.Guardrails = &scimv1.Guardrails{Groups: &scimv1.AllowList{Allowed: []string{"ops-*"}}}
		})
		si := clusterIdentity(ns, "ops", cst.Name)
		si.Spec.Groups = []string{group}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned))
		id := accountsWithExternalIDOn(srv, ns, "ops")()[0]["id"].(string)
		members := func() []string {
			var out []string
			for _, g := range srv.Groups.All() {
				if g["displayName"] == group {
					list, _ := g["members"].([]any)
					for _, m := range list {
						out = append(out, m.(map[string]any)["value"].(string))
					}
				}
			}
			return out
		}
		Expect(members()).To(ContainElement(id))

		By("the target is put in Observe mode; the tenant drops the group from its spec: the plan says -groups")
		update(ctx, cst, func(c *scimv1.ClusterScimTarget) { c.Spec.Mode = scimv1.ModeObserve })
		Eventually(planOf(ctx, ns, "ops")).ShouldNot(BeNil())
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Groups = nil })
		Eventually(planOf(ctx, ns, "ops")).Should(HaveField("GroupsRemoved", ContainElement(group)))

		By("the admin enforces the target, then narrows its guardrails to no ops-* group at all")
		update(ctx, cst, func(c *scimv1.ClusterScimTarget) { c.Spec.Mode = scimv1.ModeEnforce })
		Eventually(planOf(ctx, ns, "ops")).Should(BeNil())
		update(ctx, cst, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Guardrails = &scimv1.Guardrails{Groups: &scimv1.AllowList{Allowed: []string{"readers-*"}}}
		})
		Eventually(members).WithTimeout(15*time.Second).ShouldNot(ContainElement(id),
			"the account kept a group its spec no longer asks for and the shared target's guardrails no longer allow")
	})
})

// adoptionTaken says what an adoption of the disabled admins' account acct took over: its
// ownership, its activity, its membership of prod-admins.
func adoptionTaken(srv *scimserver.Server, ns, acct string) []string {
	u := userOn(srv, acct)
	var members []string
	for _, g := range srv.Groups.All() {
		if g["displayName"] == "prod-admins-"+ns {
			list, _ := g["members"].([]any)
			for _, m := range list {
				members = append(members, m.(map[string]any)["value"].(string))
			}
		}
	}
	var taken []string
	if u["externalId"] == externalIDOf(ns, "deploy") {
		taken = append(taken, "the tenant's identity now owns the account (externalId stamped) although the target's adoption is Never")
		if u["active"] == true {
			taken = append(taken, "the account the application's admins disabled is active again")
		}
		for _, m := range members {
			if m == acct {
				taken = append(taken, "the account stays in group prod-admins, which the target's guardrails do not allow")
			}
		}
	}
	return taken
}
