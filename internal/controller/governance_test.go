package controller

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/nhi-dev/scim-operator/test/setreceiver"
)

// governed makes a Ready target whose spec.governance is g.
func governed(ctx context.Context, ns, name string, g *scimv1.Governance) *scimv1.ScimTarget {
	return fastTarget(ctx, ns, name, func(t *scimv1.ScimTarget) { t.Spec.Governance = g })
}

// person puts a person's account in the reference server (the owner directory) and returns its id.
func person(userName, email string, active bool) string {
	id := scimSrv.Users.Put(map[string]any{"userName": userName, "active": active,
		"emails": []any{map[string]any{"value": email, "type": "work", "primary": true}}})
	DeferCleanup(func() { scimSrv.Users.Remove(id) })
	return id
}

func annotate(ctx context.Context, si *scimv1.ServiceIdentity, key, value string) {
	update(ctx, si, func(si *scimv1.ServiceIdentity) {
		if si.Annotations == nil {
			si.Annotations = map[string]string{}
		}
		si.Annotations[key] = value
	})
}

func setsFor(path string) func() []setreceiver.SET {
	// The whole URI: other specs' providers (httptest servers) number their accounts alike.
	subject := endpoint() + path
	return func() []setreceiver.SET {
		var out []setreceiver.SET
		for _, s := range setRecv.Accepted() {
			if s.Subject["uri"] == subject {
				out = append(out, s)
			}
		}
		return out
	}
}

var _ = Describe("Governance: accountable owners, bounded lifetimes, periodic review, revocation evidence", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	It("caps every identity's lifetime at the target's maxTTL and says so", func() {
		governed(ctx, ns, "bounded", &scimv1.Governance{MaxTTL: scimv1.DurationOf(time.Hour)})
		none := newIdentity(ns, "no-expiry", "bounded")
		long := newIdentity(ns, "long", "bounded")
		long.Spec.TTL = scimv1.DurationOf(2 * time.Hour)
		short := newIdentity(ns, "short", "bounded")
		short.Spec.TTL = scimv1.DurationOf(30 * time.Minute)
		for _, si := range []*scimv1.ServiceIdentity{none, long, short} {
			Expect(k8s.Create(ctx, si)).To(Succeed())
		}
		for _, si := range []*scimv1.ServiceIdentity{none, long} {
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			Expect(si.Status.ExpiresAt).NotTo(BeNil())
			Expect(si.Status.ExpiresAt.Time).To(BeTemporally("~", si.CreationTimestamp.Add(time.Hour), time.Second))
			Expect(si.Status.ExpiryCappedBy).To(Equal(targets.Key(scimv1.KindScimTarget, ns, "bounded") + " (maxTTL 1h0m0s)"))
		}
		Eventually(get(ctx, short)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(short.Status.ExpiresAt.Time).To(BeTemporally("~", short.CreationTimestamp.Add(30*time.Minute), time.Second))
		Expect(short.Status.ExpiryCappedBy).To(BeEmpty())
	})

	It("requires an owner where the target says so, and provisions once one is set", func() {
		governed(ctx, ns, "owned", &scimv1.Governance{RequireOwner: true})
		si := newIdentity(ns, "ownerless", "owned")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonInvalidSpec))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("spec.owner is required by " + targets.Key(scimv1.KindScimTarget, ns, "owned")))
		Expect(accountsWithExternalID(ns, "ownerless")()).To(BeEmpty())
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Owner = "someone@example.com" })
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountsWithExternalID(ns, "ownerless")()).To(HaveLen(1))
	})

	It("checks the owner in the directory, suspends after the grace when the person left, and resumes with a new owner", func() {
		person("alice."+ns, "alice@"+ns+".example", true)
		bob := person("bob."+ns, "bob@"+ns+".example", true)
		// The directory is a target on the same reference server: its Users are the people.
		fastTarget(ctx, ns, "people")
		governed(ctx, ns, "app", &scimv1.Governance{
			OwnerDirectory: &scimv1.OwnerDirectory{Name: "people"},
			OwnerInactive:  &scimv1.OwnerInactivePolicy{Action: scimv1.OwnerInactiveSuspend, Grace: scimv1.DurationOf(2 * time.Second)},
		})
		si := newIdentity(ns, "payroll-bot", "app")
		si.Spec.Owner = "Alice@" + ns + ".example"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Owner).NotTo(BeNil())
		Expect(si.Status.Owner.State).To(Equal(scimv1.OwnerActive))
		Expect(si).To(HaveCondition(scimv1.ConditionOwnerActive, metav1.ConditionTrue))

		By("the person leaves: reported at once, suspended once the grace has passed")
		alice := scimSrv.UsersWhere("userName", "alice."+ns)[0]["id"].(string)
		scimSrv.Users.Mutate(alice, func(a map[string]any) { a["active"] = false })
		requestResync(ctx, si)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionOwnerActive, metav1.ConditionFalse, scimv1.ReasonOwnerInactive))
		Expect(si.Status.Owner.State).To(Equal(scimv1.OwnerInactive))
		Expect(si.Status.Owner.Since).NotTo(BeNil())
		Eventually(eventReasons(ctx, ns, "payroll-bot")).Should(ContainElement(scimv1.ReasonOwnerInactive))
		Eventually(get(ctx, si), "10s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerInactive))
		Eventually(func() any { return accountOf(ns, "payroll-bot")["active"] }).Should(Equal(false))
		Expect(si.Status.Targets[0].State).To(Equal(scimv1.TargetStateDeprovisioned))
		Expect(si.Status.Targets[0].Revocation).NotTo(BeNil())
		Expect(si.Status.Targets[0].Revocation.Result).To(Equal(scimv1.RevocationInactive), "deactivated, kept for the new owner")
		Expect(metricValue("scim_operator_identities_owner_inactive", map[string]string{"identity_namespace": ns})).To(Equal(1.0))

		By("a new, active owner: the accounts are active again")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Owner = "bob@" + ns + ".example" })
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Owner.State).To(Equal(scimv1.OwnerActive))
		Expect(accountOf(ns, "payroll-bot")["active"]).To(BeTrue())
		Expect(metricValue("scim_operator_identities_owner_inactive", map[string]string{"identity_namespace": ns})).To(BeZero())
		Expect(scimSrv.Users.All()).To(ContainElement(HaveKeyWithValue("id", bob)), "the directory's people are left alone")
	})

	It("refuses to ask the cluster's directory for a tenant's target", func() {
		governed(ctx, ns, "nosy", &scimv1.Governance{
			OwnerDirectory: &scimv1.OwnerDirectory{Kind: scimv1.KindClusterScimTarget, Name: "corporate"},
		})
		si := newIdentity(ns, "probe", "nosy")
		si.Spec.Owner = "ceo@example.com"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionOwnerActive, metav1.ConditionUnknown, "DirectoryUnavailable"))
		Expect(si.Status.Owner.Message).To(ContainSubstring("must be a ScimTarget"))
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue), "an unanswered directory suspends nothing")
	})

	It("suspends an identity whose review is overdue until it is attested, and ignores attestations from the future", func() {
		fastTarget(ctx, ns, "reviewed")
		si := newIdentity(ns, "quarterly", "reviewed")
		si.Spec.Review = &scimv1.ReviewPolicy{Every: scimv1.Duration("1h")}
		// Attested by the suite's admin (a reviewer: every verb), recorded as
		// config/admission's review-attestation policy would (attacks_attestation_test.go).
		si.Annotations = attestation(ctx, time.Now().Add(-2*time.Hour))
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonReviewOverdue))
		Expect(si.Status.Review.ReviewedBy).To(Equal(si.Annotations[scimv1.ReviewedByAnnotation]))
		Expect(si.Status.Review).NotTo(BeNil())
		Expect(si.Status.Review.NextReviewAt.Time).To(BeTemporally("~", time.Now().Add(-time.Hour), 5*time.Second))
		// Overdue from the start: no account is made active (none at all, here).
		Consistently(accountsWithExternalID(ns, "quarterly"), "300ms").Should(SatisfyAny(BeEmpty(), ConsistOf(HaveKeyWithValue("active", false))))
		Expect(metricValue("scim_operator_identities_review", map[string]string{"identity_namespace": ns, "state": "overdue"})).To(Equal(1.0))

		annotate(ctx, si, scimv1.ReviewedAtAnnotation, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		Eventually(get(ctx, si)).Should(WithTransform(func(si *scimv1.ServiceIdentity) string { return si.Status.Review.Message },
			ContainSubstring("in the future")))
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonReviewOverdue))

		attested := time.Now().UTC().Truncate(time.Second)
		annotate(ctx, si, scimv1.ReviewedAtAnnotation, attested.Format(time.RFC3339))
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Review.LastReviewedAt.Time).To(BeTemporally("==", attested))
		Expect(si.Status.Review.NextReviewAt.Time).To(BeTemporally("==", attested.Add(time.Hour)))
		Eventually(func() any { return accountOf(ns, "quarterly")["active"] }).Should(Equal(true))
		Eventually(eventReasons(ctx, ns, "quarterly")).Should(ContainElements(scimv1.ReasonReviewOverdue, "Attested"))
		Expect(metricValue("scim_operator_identities_review", map[string]string{"identity_namespace": ns, "state": "overdue"})).To(BeZero())
	})

	It("reads each account back after revoking it, records what the target confirmed and sends a signed Security Event Token", func() {
		fastTarget(ctx, ns, "evident")
		expiring := newIdentity(ns, "expiring", "evident")
		expiring.Spec.TTL = scimv1.DurationOf(3 * time.Second)
		retired := newIdentity(ns, "retired", "evident")
		for _, si := range []*scimv1.ServiceIdentity{expiring, retired} {
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}
		expiringID, retiredID := expiring.Status.Targets[0].ID, retired.Status.Targets[0].ID

		By("expiry: the evidence is on the identity, which stays")
		Eventually(get(ctx, expiring), "10s").Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		ev := expiring.Status.Targets[0].Revocation
		Expect(ev).NotTo(BeNil())
		Expect(ev.Result).To(Equal(scimv1.RevocationNotFound))
		Expect(ev.SecurityEvent).NotTo(BeEmpty())
		Eventually(setsFor("/Users/" + expiringID)).Should(HaveLen(1))
		set := setsFor("/Users/" + expiringID)()[0]
		Expect(set.EventType).To(Equal(string(secevent.AccountPurged)))
		Expect(set.JTI).To(Equal(ev.SecurityEvent))
		Expect(set.Txn).To(Equal(string(expiring.UID)))

		By("deletion, with the receiver down at first: the token is delivered once it is back")
		setRecv.FailNext(2, 503, "")
		Expect(k8s.Delete(ctx, retired)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "retired"), retired)) }).Should(BeTrue())
		Eventually(eventsAbout(ctx, ns, "retired", func(e eventsv1.Event) string { return e.Note })).
			Should(ContainElement(ContainSubstring(targets.Key(scimv1.KindScimTarget, ns, "evident") + " inactive (the target confirmed the account gone (NotFound)")))
		Eventually(setsFor("/Users/"+retiredID), "30s").Should(HaveLen(1))
		Expect(setRecv.Faulted()).To(BeNumerically(">=", 2))
	})
})
