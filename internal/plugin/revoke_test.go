package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// revokeAsync runs kubectl scim revoke in the background, as an incident responder would while
// the operator (here: the spec) answers.
func revokeAsync(ctx context.Context, args ...string) <-chan result {
	done := make(chan result, 1)
	go func() {
		defer GinkgoRecover()
		done <- kubectlScim(ctx, time.Time{}, append([]string{"revoke"}, args...)...)
	}()
	return done
}

func provisioned(name, kind string) scimv1.IdentityTargetStatus {
	return scimv1.IdentityTargetStatus{Kind: kind, Name: name, ID: name + "-id", Active: ptr.To(true), State: scimv1.TargetStateProvisioned}
}

var _ = Describe("kubectl scim revoke", func() {
	var (
		ctx context.Context
		ns  string
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx)
		si := identityIn(ns, "ci-bot", ref("okta"), clusterRef("entra"))
		si.Spec.Owner = "bob@example.com"
		createIdentity(ctx, si, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{cond(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned, "", time.Now())},
			Targets:    []scimv1.IdentityTargetStatus{provisioned("okta", scimv1.KindScimTarget), provisioned("entra", scimv1.KindClusterScimTarget)},
		})
	})

	It("sets spec.suspend with the reason, and names the targets on which the account is still active at the timeout", func() {
		r := kubectlScim(ctx, time.Time{}, "revoke", "ci-bot", "-n", ns, "--timeout", "1s",
			"--reason", "INC-42:\x1b[2J token\nleaked in CI logs")
		Expect(r.err).To(MatchError(`spec.suspend is set, but the account is still active on 2 of 2 targets after 1s: ` +
			`ScimTarget/okta (Provisioned, active=true): the target last showed the account active (active=true); ` +
			`ClusterScimTarget/entra (Provisioned, active=true): the target last showed the account active (active=true)`))
		Expect(r.Out).To(HavePrefix("serviceidentity " + ns + "/ci-bot suspended (spec.suspend=true)\n" +
			"Reason recorded in annotation scim.nhi.dev/revoked-reason.\n" +
			`The operator sets active=false on the account "ci-bot.` + ns + `" on 2 target(s): ScimTarget/okta, ClusterScimTarget/entra.` + "\n"))
		Expect(r.Out).To(ContainSubstring("Waiting up to 1s for every target to confirm...\n" +
			"  ScimTarget/okta: Provisioned (active=true): STILL ACTIVE: the target last showed the account active (active=true)\n" +
			"  ClusterScimTarget/entra: Provisioned (active=true): STILL ACTIVE: the target last showed the account active (active=true)\n"))

		si := get(ctx, ns, "ci-bot")
		Expect(si.Spec.Suspend).To(BeTrue())
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.RevokedReasonAnnotation, "INC-42:[2J token leaked in CI logs"))
		Expect(si.ManagedFields).To(ContainElement(HaveField("Manager", FieldManager)))
	})

	It("returns once every target showed the account off (Suspended and read back active=false, or revoked with evidence)", func() {
		done := revokeAsync(ctx, "ci-bot", "-n", ns, "--timeout", "15s")
		// The operator's part: suspend the accounts, one target at a time.
		si := &scimv1.ServiceIdentity{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ci-bot"}, si)).To(Succeed())
			g.Expect(si.Spec.Suspend).To(BeTrue())
		}).Should(Succeed())
		si.Status.Targets[0].State, si.Status.Targets[0].Active = scimv1.TargetStateSuspended, ptr.To(false)
		Expect(k8s.Status().Update(ctx, si)).To(Succeed())
		Consistently(done, 300*time.Millisecond).ShouldNot(Receive())
		// active=false from a read before a step that failed is no evidence: that step may have
		// changed the account (a reactivation whose answer was lost).
		si.Status.Targets[1].State, si.Status.Targets[1].Active, si.Status.Targets[1].Message = scimv1.TargetStateError, ptr.To(false), "group sync failed"
		Expect(k8s.Status().Update(ctx, si)).To(Succeed())
		Consistently(done, 300*time.Millisecond).ShouldNot(Receive())
		// entra's account deleted, and read back gone.
		si.Status.Targets[1].State, si.Status.Targets[1].Active, si.Status.Targets[1].Message = scimv1.TargetStateDeprovisioned, ptr.To(false), ""
		si.Status.Targets[1].Revocation = &scimv1.RevocationEvidence{Result: scimv1.RevocationNotFound, ConfirmedAt: metav1.NewTime(time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC))}
		Expect(k8s.Status().Update(ctx, si)).To(Succeed())

		var r result
		Eventually(done).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(HaveSuffix("  ScimTarget/okta: Suspended (active=false): confirmed off: the target showed the account inactive (active=false) when it was last read\n" +
			"  ClusterScimTarget/entra: Deprovisioned (active=false): confirmed off: the target confirmed the account gone (NotFound) at 2026-12-07T06:00:00Z\n" +
			`Every target confirmed: the account "ci-bot.` + ns + `" is inactive.` + "\n"))
		Expect(get(ctx, ns, "ci-bot").Annotations).NotTo(HaveKey(scimv1.RevokedReasonAnnotation))
	})

	It("fails at once when spec.suspend is turned off again while it waits, naming who did it", func() {
		done := revokeAsync(ctx, "ci-bot", "-n", ns, "--timeout", "15s")
		si := &scimv1.ServiceIdentity{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ci-bot"}, si)).To(Succeed())
			g.Expect(si.Spec.Suspend).To(BeTrue())
		}).Should(Succeed())
		Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":false}}`)),
			client.FieldOwner("gitops-sync"))).To(Succeed())

		var r result
		Eventually(done).Should(Receive(&r))
		Expect(r.err).To(MatchError(ns + "/ci-bot: spec.suspend was set back to false (by gitops-sync) before every target confirmed; access may be restored"))
	})

	It("says when the identity is controlled by a workload whose annotations rewrote the spec", func() {
		si := get(ctx, ns, "ci-bot")
		si.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: "ci", UID: "sa-uid", Controller: ptr.To(true)}}
		Expect(k8s.Update(ctx, si)).To(Succeed())
		done := revokeAsync(ctx, "ci-bot", "-n", ns, "--timeout", "15s")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si.Spec.Suspend).To(BeTrue())
		}).Should(Succeed())
		// As the workload controller does: the whole spec rewritten from the annotations, which
		// have no suspend (the field is dropped, so no one owns it afterwards).
		si.Spec.Suspend = false
		Expect(k8s.Update(ctx, si, client.FieldOwner("manager"))).To(Succeed())

		var r result
		Eventually(done).Should(Receive(&r))
		Expect(r.err).To(MatchError(ns + "/ci-bot: spec.suspend was set back to false (dropped by an update of the whole spec) before every target confirmed; " +
			"access may be restored; the identity is controlled by ServiceAccount ci, whose scim.nhi.dev/* annotations the operator writes into its spec"))
	})

	It("attack: an Orphan deletionPolicy leaves the account active and revoke must not call it inactive", func() {
		// What the operator records when an identity under deletionPolicy Orphan expires: the
		// entry is Deprovisioned, and the account was left as it was, active on the target.
		si := identityIn(ns, "orphan-bot", ref("okta"))
		si.Spec.DeletionPolicy = ptr.To(scimv1.DeletionPolicyOrphan)
		createIdentity(ctx, si, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{cond(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired, "Expired", time.Now())},
			Targets: []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "okta", ID: "u-9", Active: ptr.To(true),
				State: scimv1.TargetStateDeprovisioned, Message: "Account left on the target (deletionPolicy Orphan)",
				Revocation: &scimv1.RevocationEvidence{Result: scimv1.RevocationOrphaned, ConfirmedAt: metav1.Now()}}},
			DeprovisionedAt: mtime(time.Now()),
		})

		r := kubectlScim(ctx, time.Time{}, "revoke", "orphan-bot", "-n", ns, "--timeout", "1s")
		Expect(r.err).To(HaveOccurred(), "revoke called an account left active by deletionPolicy Orphan inactive:\n%s", r.Out)
		Expect(r.err).To(MatchError(ContainSubstring("the account is still active on 1 of 1 targets after 1s: ScimTarget/okta (Deprovisioned, active=true")))
		Expect(r.err).To(MatchError(ContainSubstring("deletionPolicy Orphan left the account as it was")))
		Expect(r.Out).To(ContainSubstring("  ScimTarget/okta: Deprovisioned (active=true): STILL ACTIVE: deletionPolicy Orphan left the account as it was"))
		Expect(r.Out).NotTo(ContainSubstring("inactive."))
		Expect(r.Out).NotTo(ContainSubstring("confirmed"))

		By("why and inventory say it is still active")
		r = kubectlScim(ctx, time.Time{}, "why", "orphan-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`Accounts:\s+still active on 1 of 1 target\(s\): ScimTarget/okta: deletionPolicy Orphan left the account as it was`))
		Expect(r.Out).To(MatchRegexp(`Deprovisioned:\s+\S+ \(yet the account is still active on 1 target\(s\): see Accounts\)`))
		Expect(section(r.Out, "Targets:")[1]).To(MatchRegexp(`^\s+ScimTarget/okta\s+Deprovisioned\s+true\s+still active\s+u-9\s.*revocation skipped \S+ \(Orphaned\)`))
		r = kubectlScim(ctx, time.Time{}, "inventory", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`(?m)^orphan-bot\s+-\s+ScimTarget/okta:Deprovisioned\s+still active\s+Expired\s`))
		r = kubectlScim(ctx, time.Time{}, "inventory", "-n", ns, "-o", "json")
		Expect(r.err).NotTo(HaveOccurred())
		var records []map[string]any
		Expect(json.Unmarshal([]byte(r.Out), &records)).To(Succeed())
		Expect(records).To(ContainElement(And(HaveKeyWithValue("name", "orphan-bot"), HaveKeyWithValue("accountOff", false),
			HaveKeyWithValue("stillActiveOn", ConsistOf("ScimTarget/okta")),
			HaveKeyWithValue("targets", ConsistOf(And(HaveKeyWithValue("accountOff", false),
				HaveKeyWithValue("evidence", ContainSubstring("deletionPolicy Orphan left the account as it was"))))))))
	})

	It("attack: an identity deleted while revoke waits is not reported deprovisioned", func() {
		// Deleted under deletionPolicy Orphan, or with its finalizer stripped: its status goes
		// with it, and nothing read from the targets says the accounts are off.
		done := revokeAsync(ctx, "ci-bot", "-n", ns, "--timeout", "15s")
		si := &scimv1.ServiceIdentity{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ci-bot"}, si)).To(Succeed())
			g.Expect(si.Spec.Suspend).To(BeTrue())
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, si)).To(Succeed())

		var r result
		Eventually(done).Should(Receive(&r))
		Expect(r.err).To(HaveOccurred(), "revoke reported a deleted identity's accounts deprovisioned:\n%s", r.Out)
		Expect(r.err).To(MatchError(ContainSubstring("serviceidentity " + ns + "/ci-bot was deleted while revoke waited, before every target confirmed the account off")))
		Expect(r.err).To(MatchError(ContainSubstring("still active on ScimTarget/okta (Provisioned, active=true): the target last showed the account active")))
		Expect(r.Out).NotTo(ContainSubstring("deprovisioned the accounts"))
	})

	It("bounds the recorded reason, and with --no-wait returns once spec.suspend is set", func() {
		r := kubectlScim(ctx, time.Time{}, "revoke", "ci-bot", "-n", ns, "--no-wait", "--reason", strings.Repeat("leak ", 100))
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).NotTo(ContainSubstring("Waiting"))
		si := get(ctx, ns, "ci-bot")
		Expect(si.Spec.Suspend).To(BeTrue())
		Expect(len(si.Annotations[scimv1.RevokedReasonAnnotation])).To(BeNumerically("<=", maxReasonBytes))
		Expect(si.Annotations[scimv1.RevokedReasonAnnotation]).To(HavePrefix("leak leak"))
	})

	It("refuses an identity that does not exist and a timeout that is not positive", func() {
		r := kubectlScim(ctx, time.Time{}, "revoke", "ghost", "-n", ns)
		Expect(r.err).To(MatchError(`serviceidentity "ghost" not found in namespace "` + ns + `"`))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ghost"}, &scimv1.ServiceIdentity{})).NotTo(Succeed())
		r = kubectlScim(ctx, time.Time{}, "revoke", "ci-bot", "-n", ns, "--timeout", "0s")
		Expect(r.err).To(MatchError(ContainSubstring("--timeout must be positive")))
		Expect(get(ctx, ns, "ci-bot").Spec.Suspend).To(BeFalse())
	})
})

// The whole path with the real operator and the reference SCIM server: provision, revoke,
// every account inactive on the target, explained by why and listed by inventory.
var _ = Describe("kubectl scim against the running operator", Ordered, func() {
	ctx := context.Background()

	BeforeAll(func() {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: liveNS, Name: "okta-token"},
			StringData: map[string]string{"token": testToken}}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		// The target is its own owner directory, where alice is an active person; it caps
		// lifetimes at 30 days and asks for a review every 90.
		_, err := scimSrv.Users.Create(nil, map[string]any{"userName": "alice", "active": true,
			"emails": []any{map[string]any{"value": "alice@example.com", "primary": true}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &scimv1.ScimTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: liveNS, Name: "okta"},
			Spec: scimv1.ScimTargetSpec{Endpoint: scimSrv.Endpoint(), AllowInsecureHTTP: true,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: secret.Name, Key: "token"}}},
				Governance: &scimv1.Governance{
					OwnerDirectory: &scimv1.OwnerDirectory{Name: "okta"},
					MaxTTL:         scimv1.DurationOf(30 * 24 * time.Hour),
					Review:         &scimv1.ReviewPolicy{Every: *scimv1.DurationOf(90 * 24 * time.Hour)},
				}},
		})).To(Succeed())
		si := identityIn(liveNS, "billing-bot", ref("okta"))
		si.Spec.Owner = "alice@example.com"
		si.Spec.TTL = scimv1.DurationOf(365 * 24 * time.Hour)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(func(g Gomega) {
			got := get(ctx, liveNS, "billing-bot")
			g.Expect(got.Status.Conditions).To(ContainElement(And(HaveField("Type", scimv1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
			g.Expect(got.Status.Owner).To(HaveField("State", scimv1.OwnerActive))
			g.Expect(got.Status.Review).NotTo(BeNil())
		}).Should(Succeed())
		Expect(scimSrv.UsersWhere("userName", "billing-bot."+liveNS)).To(ConsistOf(HaveKeyWithValue("active", true)))
	})

	It("lists the provisioned identity as Ready, with its owner checked, its capped expiry and its review due", func() {
		r := kubectlScim(ctx, time.Time{}, "inventory", "-n", liveNS)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`(?m)^billing-bot\s+alice@example.com \(Active\)\s+ScimTarget/okta:Provisioned\s+still active\s+Ready\s+Provisioned\s+\S+ \(in 29d\)\s+\S+ \(in 89d\)$`))
	})

	It("revokes: the account is inactive on the target when revoke returns", func() {
		r := kubectlScim(ctx, time.Time{}, "revoke", "billing-bot", "-n", liveNS, "--reason", "INC-4242: token leaked in CI logs", "--timeout", "20s")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(HaveSuffix("  ScimTarget/okta: Suspended (active=false): confirmed off: the target showed the account inactive (active=false) when it was last read\n" +
			`Every target confirmed: the account "billing-bot.` + liveNS + `" is inactive.` + "\n"))
		Expect(scimSrv.UsersWhere("userName", "billing-bot."+liveNS)).To(ConsistOf(HaveKeyWithValue("active", false)))
	})

	It("explains the suspension with the operator's own Events, and lists it as Suspended", func() {
		r := kubectlScim(ctx, time.Time{}, "why", "billing-bot", "-n", liveNS)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`State:\s+Suspended \(spec.suspend\)`))
		Expect(r.Out).To(MatchRegexp(`Suspended:\s+spec.suspend=true: the operator sets every account active=false; revoked: INC-4242: token leaked in CI logs`))
		Expect(r.Out).To(MatchRegexp(`Accounts:\s+off on every target \(1\), on each target's own evidence`))
		Expect(section(r.Out, "Targets:")[1]).To(MatchRegexp(`^\s+ScimTarget/okta\s+Suspended\s+false\s+off\s+\S+\s+billing-bot\.%s\s`, liveNS))
		events := section(r.Out, "Events (oldest first):")
		Expect(events[len(events)-1]).To(MatchRegexp(`Warning\s+Suspended\s+ServiceIdentity/billing-bot\s+Account "billing-bot.%s" set active=false on ScimTarget/%s/okta \(spec.suspend\)`, liveNS, liveNS))

		r = kubectlScim(ctx, time.Time{}, "inventory", "-n", liveNS, "-o", "csv")
		Expect(r.err).NotTo(HaveOccurred())

		Expect(r.Out).To(ContainSubstring(",alice@example.com,Active,Suspended,spec.suspend,true,ScimTarget/okta:Suspended,"))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s,billing-bot,.*,true,$`, liveNS)) // accountOff, and still active nowhere
	})

	It("records a review that the operator takes onto status.review, shown by why", func() {
		at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
		r := kubectlScim(ctx, time.Time{}, "review", "billing-bot", "-n", liveNS, "--at", at.Format(time.RFC3339))
		Expect(r.err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			got := get(ctx, liveNS, "billing-bot")
			g.Expect(got.Status.Review).NotTo(BeNil())
			g.Expect(got.Status.Review.LastReviewedAt).NotTo(BeNil())
			g.Expect(got.Status.Review.LastReviewedAt.Time).To(BeTemporally("==", at))
		}).Should(Succeed())
		r = kubectlScim(ctx, time.Time{}, "why", "billing-bot", "-n", liveNS)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`Review:\s+every 2160h0m0s, last %s by plugin-admin, next %s \(in 89d\)`, at.Format(time.RFC3339), at.Add(90*24*time.Hour).Format(time.RFC3339)))
		Expect(r.Out).To(MatchRegexp(`Owner:\s+alice@example.com \(owner Active`))
		Expect(r.Out).To(MatchRegexp(`Expires:\s+\S+ \(in 29d\), capped by `))
	})
})

// An identity that expires under deletionPolicy Orphan, through the real operator and the
// reference SCIM server: the account stays active on the target, and no command may say
// otherwise.
var _ = Describe("kubectl scim against the running operator: deletionPolicy Orphan", func() {
	It("attack: an identity expired under deletionPolicy Orphan keeps its account active, and no command calls it inactive", func() {
		ctx := context.Background()
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: liveNS, Name: "orphan-token"},
			StringData: map[string]string{"token": testToken}}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		Expect(k8s.Create(ctx, &scimv1.ScimTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: liveNS, Name: "orphan-okta"},
			Spec: scimv1.ScimTargetSpec{Endpoint: scimSrv.Endpoint(), AllowInsecureHTTP: true,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: secret.Name, Key: "token"}}}},
		})).To(Succeed())
		si := identityIn(liveNS, "orphan-bot", ref("orphan-okta"))
		si.Spec.DeletionPolicy = ptr.To(scimv1.DeletionPolicyOrphan)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		userName := "orphan-bot." + liveNS
		Eventually(func(g Gomega) {
			got := get(ctx, liveNS, "orphan-bot")
			g.Expect(got.Status.Conditions).To(ContainElement(And(HaveField("Type", scimv1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
			g.Expect(scimSrv.UsersWhere("userName", userName)).To(ConsistOf(HaveKeyWithValue("active", true)))
		}).Should(Succeed())

		By("it expires: the operator leaves the account as it was")
		expiry := fmt.Sprintf(`{"spec":{"expiresAt":%q}}`, time.Now().UTC().Format(time.RFC3339))
		Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(expiry)))).To(Succeed())
		Eventually(func(g Gomega) {
			got := get(ctx, liveNS, "orphan-bot")
			g.Expect(got.Status.Targets).To(ConsistOf(And(HaveField("State", scimv1.TargetStateDeprovisioned),
				HaveField("Revocation.Result", scimv1.RevocationOrphaned))))
		}).Should(Succeed())
		Expect(scimSrv.UsersWhere("userName", userName)).To(ConsistOf(HaveKeyWithValue("active", true)))

		r := kubectlScim(ctx, time.Time{}, "why", "orphan-bot", "-n", liveNS)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`Accounts:\s+still active on 1 of 1 target\(s\): ScimTarget/orphan-okta: deletionPolicy Orphan left the account as it was`))
		Expect(r.Out).To(MatchRegexp(`Deprovisioned:\s+\S+ \(yet the account is still active on 1 target\(s\): see Accounts\)`))
		Expect(section(r.Out, "Targets:")[1]).To(MatchRegexp(`^\s+ScimTarget/orphan-okta\s+Deprovisioned\s+true\s+still active\s`))
		r = kubectlScim(ctx, time.Time{}, "inventory", "-n", liveNS, "-o", "json")
		Expect(r.err).NotTo(HaveOccurred())
		var records []map[string]any
		Expect(json.Unmarshal([]byte(r.Out), &records)).To(Succeed())
		Expect(records).To(ContainElement(And(HaveKeyWithValue("name", "orphan-bot"), HaveKeyWithValue("accountOff", false))))

		By("revoke calls the account inactive only if the target shows it inactive")
		r = kubectlScim(ctx, time.Time{}, "revoke", "orphan-bot", "-n", liveNS, "--timeout", "3s")
		if r.err == nil {
			// The kill switch reached the account: then the target must show it.
			Expect(scimSrv.UsersWhere("userName", userName)).To(ConsistOf(HaveKeyWithValue("active", false)),
				"revoke said the account is inactive while the target shows it active:\n%s", r.Out)
		} else {
			Expect(r.err).To(MatchError(ContainSubstring("the account is still active on 1 of 1 targets")))
			Expect(r.Out).To(ContainSubstring("  ScimTarget/orphan-okta: Deprovisioned (active=true): STILL ACTIVE: deletionPolicy Orphan left the account as it was"))
			Expect(r.Out).NotTo(ContainSubstring("inactive."))
		}
	})
})
