package plugin

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// observeTarget creates a ScimTarget in mode, then writes its status as the operator would:
// observed, with the plan given (none in Enforce mode). Its namespace is not the operator's
// (liveNS), so nothing overwrites it.
func observeTarget(ctx context.Context, ns, name string, mode scimv1.TargetMode, plan *scimv1.TargetPlan) {
	t := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.ScimTargetSpec{Endpoint: "https://" + name + ".example.com/scim/v2", Mode: mode,
			Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: name + "-token", Key: "token"}}}}}
	Expect(k8s.Create(ctx, t)).To(Succeed())
	t.Status = scimv1.ScimTargetStatus{ObservedGeneration: t.Generation, Plan: plan}
	Expect(k8s.Status().Update(ctx, t)).To(Succeed())
}

// planned is the status entry of an identity's account on an Observe target, with its plan.
func planned(target string, plan *scimv1.AccountPlan) scimv1.IdentityTargetStatus {
	return scimv1.IdentityTargetStatus{Kind: scimv1.KindScimTarget, Name: target, State: scimv1.TargetStatePending, Plan: plan}
}

var _ = Describe("kubectl scim plan", func() {
	var (
		ctx       context.Context
		ns        string
		now       time.Time
		plannedAt *metav1.Time
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns = newNamespace(ctx)
		now = time.Now().UTC().Truncate(time.Second)
		plannedAt = mtime(now.Add(-2 * time.Minute))
		observeTarget(ctx, ns, "acme", scimv1.ModeObserve, &scimv1.TargetPlan{
			PlannedAt: plannedAt,
			Actions: []scimv1.PlanCount{{Action: scimv1.PlanConflict, Count: 1}, {Action: scimv1.PlanCreate, Count: 1},
				{Action: scimv1.PlanAdopt, Count: 1}, {Action: scimv1.PlanUpdate, Count: 1}, {Action: scimv1.PlanNone, Count: 1}},
			Orphans: 2, OrphanAction: "Report",
			Breaker: "within limits: 0 deletions planned, at most 10 per 1h",
		})
		observeTarget(ctx, ns, "legacy", scimv1.ModeEnforce, nil)
		observeTarget(ctx, ns, "old", scimv1.ModeObserve, &scimv1.TargetPlan{PlannedAt: mtime(now.Add(-3 * time.Hour)),
			Actions: []scimv1.PlanCount{{Action: scimv1.PlanDeactivate, Count: 1}}})

		createIdentity(ctx, identityIn(ns, "billing-bot", ref("acme")), scimv1.ServiceIdentityStatus{
			Targets: []scimv1.IdentityTargetStatus{planned("acme", &scimv1.AccountPlan{Action: scimv1.PlanUpdate, PlannedAt: plannedAt,
				Changes: []scimv1.AttributeChange{
					{Path: "displayName", Current: `"Billing"`, Desired: `"Billing bot"`},
					{Path: "active", Current: "false", Desired: "true"},
					{Path: "title", Current: `"legacy"`},
				},
				GroupsAdded: []string{"payments-readers", "payments-writers"}, GroupsRemoved: []string{"legacy-admins"}})}})
		createIdentity(ctx, identityIn(ns, "new-bot", ref("acme")), scimv1.ServiceIdentityStatus{
			Targets: []scimv1.IdentityTargetStatus{planned("acme", &scimv1.AccountPlan{Action: scimv1.PlanCreate, PlannedAt: plannedAt,
				Changes: []scimv1.AttributeChange{{Path: "userName", Desired: `"new-bot.` + ns + `"`}, {Path: "active", Desired: "true"}}})}})
		svc := identityIn(ns, "svc-reports", ref("acme"))
		svc.Spec.UserName = "svc-reports"
		svc.Spec.Adopt = &scimv1.AdoptAccount{ID: "user-000042", UserName: "svc-reports"}
		createIdentity(ctx, svc, scimv1.ServiceIdentityStatus{
			Targets: []scimv1.IdentityTargetStatus{planned("acme", &scimv1.AccountPlan{Action: scimv1.PlanAdopt, PlannedAt: plannedAt,
				Reason:  "spec.adopt: account user-000042 (userName svc-reports, no externalId) would be taken over",
				Changes: []scimv1.AttributeChange{{Path: "externalId", Desired: `"plugin-test/` + ns + `/svc-reports"`}}})}})
		createIdentity(ctx, identityIn(ns, "clash-bot", ref("acme")), scimv1.ServiceIdentityStatus{
			Targets: []scimv1.IdentityTargetStatus{planned("acme", &scimv1.AccountPlan{Action: scimv1.PlanConflict, PlannedAt: plannedAt,
				Reason: "account user-000007 has userName clash-bot." + ns + " and another externalId: it is not this cluster's"})}})
		createIdentity(ctx, identityIn(ns, "ok-bot", ref("acme"), ref("legacy")), scimv1.ServiceIdentityStatus{
			Targets: []scimv1.IdentityTargetStatus{planned("acme", &scimv1.AccountPlan{Action: scimv1.PlanNone, PlannedAt: plannedAt}),
				provisioned("legacy", scimv1.KindScimTarget)}})
		createIdentity(ctx, identityIn(ns, "pending-bot", ref("acme")), scimv1.ServiceIdentityStatus{})
		createIdentity(ctx, identityIn(ns, "retired-bot", ref("old")), scimv1.ServiceIdentityStatus{
			Targets: []scimv1.IdentityTargetStatus{planned("old", &scimv1.AccountPlan{Action: scimv1.PlanDeactivate,
				PlannedAt: mtime(now.Add(-3 * time.Hour)), Reason: "expired at 2026-12-01T00:00:00Z",
				Changes: []scimv1.AttributeChange{{Path: "active", Current: "true", Desired: "false"}}})}})
		// pending-bot's spec changed after the operator's last look.
		Expect(k8s.Patch(ctx, &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pending-bot"}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"displayName":"Pending"}}`)))).To(Succeed())
	})

	It("prints a row per account on the Observe targets, then each target's summary, and says which target is in Enforce mode", func() {
		r := kubectlScim(ctx, now, "plan", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		lines := strings.Split(r.Out, "\n")
		Expect(lines[0]).To(MatchRegexp(`^NAMESPACE\s+NAME\s+TARGET\s+ACTION\s+CHANGES\s+REASON$`))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+billing-bot\s+ScimTarget/acme\s+Update\s+displayName, active, title; \+groups: payments-readers,payments-writers; -groups: legacy-admins\s+-$`, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+new-bot\s+ScimTarget/acme\s+Create\s+userName, active\s+-$`, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+svc-reports\s+ScimTarget/acme\s+Adopt\s+externalId\s+spec.adopt: account user-000042 \(userName svc-reports, no externalId\) would be taken over$`, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+clash-bot\s+ScimTarget/acme\s+Conflict\s+-\s+account user-000007 has userName clash-bot.%s and another externalId`, ns, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+ok-bot\s+ScimTarget/acme\s+None\s+-\s+-$`, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+pending-bot\s+ScimTarget/acme\s+<none>\s+-\s+\(stale: the operator has not planned the latest spec yet \(generation 1 of 2\)\)$`, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+retired-bot\s+ScimTarget/old\s+Deactivate\s+active\s+expired at 2026-12-01T00:00:00Z \(stale: planned 3h ago, more than two sweep intervals: not refreshed since\)$`, ns))
		Expect(r.Out).NotTo(ContainSubstring("ScimTarget/legacy  "), "an Enforce target has no plan rows")

		Expect(r.Out).To(ContainSubstring("\nScimTarget/" + ns + "/acme: mode Observe, planned " + plannedAt.UTC().Format(time.RFC3339) + " (2m ago)\n" +
			"  actions:  None 1, Create 1, Adopt 1, Update 1, Conflict 1\n" +
			"  orphans:  2 account(s) of this cluster without an identity; the orphan policy would report them (no write)\n" +
			"  breaker:  within limits: 0 deletions planned, at most 10 per 1h\n"))
		Expect(r.Out).To(ContainSubstring("ScimTarget/" + ns + "/legacy: mode Enforce: no plan, the operator acts (kubectl scim why NAME shows what it did)\n"))
		Expect(r.Out).To(ContainSubstring("ScimTarget/" + ns + "/old: mode Observe, planned " + now.Add(-3*time.Hour).Format(time.RFC3339) + " (3h ago)\n" +
			"  STALE:    planned 3h ago, more than two sweep intervals ago: the operator has not refreshed it (is it running, and is the target Ready?)\n"))

		By("one target: its accounts and summary only")
		r = kubectlScim(ctx, now, "plan", "old", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(ContainSubstring("retired-bot"))
		Expect(r.Out).NotTo(ContainSubstring("billing-bot"))
		Expect(r.Out).NotTo(ContainSubstring("/acme"))

		By("a target in Enforce mode")
		r = kubectlScim(ctx, now, "plan", "legacy", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(Equal("ScimTarget/" + ns + "/legacy: mode Enforce: no plan, the operator acts (kubectl scim why NAME shows what it did)\n"))

		By("a target that does not exist, and one with no plan yet")
		r = kubectlScim(ctx, now, "plan", "ghost", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(Equal("ScimTarget/" + ns + "/ghost: not found\n"))
		observeTarget(ctx, ns, "fresh", scimv1.ModeObserve, nil)
		r = kubectlScim(ctx, now, "plan", "fresh", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(Equal("ScimTarget/" + ns + "/fresh: mode Observe: no plan recorded yet: the operator plans at the target's next sweep\n"))
		r = kubectlScim(ctx, now, "plan", "Deployment/x", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring("use NAME (a ScimTarget of the namespace) or ClusterScimTarget/NAME")))
	})

	It("prints a diff of each account's attributes, provider's value against desired, and its group changes", func() {
		r := kubectlScim(ctx, now, "plan", "acme", "-n", ns, "--diff")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(ContainSubstring(ns + "/billing-bot on ScimTarget/acme: Update (account \"billing-bot." + ns + "\")\n" +
			"--- provider: ScimTarget/acme (current)\n" +
			"+++ ServiceIdentity " + ns + "/billing-bot (desired)\n" +
			"- displayName: \"Billing\"\n" +
			"+ displayName: \"Billing bot\"\n" +
			"- active: false\n" +
			"+ active: true\n" +
			"- title: \"legacy\"\n" +
			"- group: legacy-admins\n" +
			"+ group: payments-readers\n" +
			"+ group: payments-writers\n\n"))
		Expect(r.Out).To(ContainSubstring(ns + "/new-bot on ScimTarget/acme: Create (account \"new-bot." + ns + "\")\n" +
			"--- provider: ScimTarget/acme (current)\n" +
			"+++ ServiceIdentity " + ns + "/new-bot (desired)\n" +
			"+ userName: \"new-bot." + ns + "\"\n" +
			"+ active: true\n\n"))
		Expect(r.Out).To(ContainSubstring(ns + "/clash-bot on ScimTarget/acme: Conflict (account \"clash-bot." + ns + "\")\n" +
			"--- provider: ScimTarget/acme (current)\n" +
			"+++ ServiceIdentity " + ns + "/clash-bot (desired)\n" +
			"  # account user-000007 has userName clash-bot." + ns + " and another externalId: it is not this cluster's\n" +
			"  (no attribute or group change)\n\n"))
		Expect(r.Out).To(ContainSubstring(ns + "/pending-bot on ScimTarget/acme: <none> (account \"pending-bot." + ns + "\")\n" +
			"--- provider: ScimTarget/acme (current)\n" +
			"+++ ServiceIdentity " + ns + "/pending-bot (desired)\n" +
			"  (no plan recorded: the operator has not planned the latest spec yet (generation 1 of 2))\n\n"))
		Expect(r.Out).To(HaveSuffix("  breaker:  within limits: 0 deletions planned, at most 10 per 1h\n"))
		r = kubectlScim(ctx, now, "plan", "acme", "-n", ns, "--diff", "-o", "json")
		Expect(r.err).To(MatchError(ContainSubstring("--diff prints a diff: use it without -o")))
	})

	It("prints the same data as JSON and YAML", func() {
		r := kubectlScim(ctx, now, "plan", "-n", ns, "-o", "json")
		Expect(r.err).NotTo(HaveOccurred())
		var doc PlanReport
		Expect(json.Unmarshal([]byte(r.Out), &doc)).To(Succeed())
		Expect(doc.Accounts).To(HaveLen(7))
		Expect(doc.Accounts).To(ContainElement(And(HaveField("Namespace", ns), HaveField("Name", "billing-bot"), HaveField("Target", "ScimTarget/acme"),
			HaveField("UserName", "billing-bot."+ns),
			HaveField("Plan.Action", scimv1.PlanUpdate), HaveField("Plan.GroupsAdded", ConsistOf("payments-readers", "payments-writers")),
			HaveField("Plan.Changes", ContainElement(scimv1.AttributeChange{Path: "displayName", Current: `"Billing"`, Desired: `"Billing bot"`})))))
		Expect(doc.Accounts).To(ContainElement(And(HaveField("Name", "pending-bot"), HaveField("Plan", BeNil()),
			HaveField("Stale", "the operator has not planned the latest spec yet (generation 1 of 2)"))))
		Expect(doc.Targets).To(ConsistOf(
			And(HaveField("Name", "acme"), HaveField("Namespace", ns), HaveField("Mode", scimv1.ModeObserve), HaveField("Plan.Orphans", int32(2)), HaveField("Stale", "")),
			And(HaveField("Name", "legacy"), HaveField("Mode", scimv1.ModeEnforce), HaveField("Plan", BeNil())),
			And(HaveField("Name", "old"), HaveField("Stale", ContainSubstring("more than two sweep intervals")))))
		// The raw document keeps the API's field names.
		Expect(r.Out).To(ContainSubstring(`"groupsRemoved": [`))
		Expect(r.Out).To(ContainSubstring(`"orphanAction": "Report"`))

		r = kubectlScim(ctx, now, "plan", "acme", "-n", ns, "-o", "yaml")
		Expect(r.err).NotTo(HaveOccurred())
		var ydoc PlanReport
		Expect(yaml.UnmarshalStrict([]byte(r.Out), &ydoc)).To(Succeed())
		Expect(ydoc.Accounts).To(HaveLen(6))
		Expect(ydoc.Targets).To(ConsistOf(HaveField("Name", "acme")))
	})

	It("shows a user who may not read ClusterScimTargets what can be read, and says what could not", func() {
		si := identityIn(ns, "shared-bot", clusterRef("corp"))
		createIdentity(ctx, si, scimv1.ServiceIdentityStatus{Targets: []scimv1.IdentityTargetStatus{{Kind: scimv1.KindClusterScimTarget, Name: "corp",
			Plan: &scimv1.AccountPlan{Action: scimv1.PlanCreate, PlannedAt: plannedAt, Changes: []scimv1.AttributeChange{{Path: "userName", Desired: `"shared-bot.` + ns + `"`}}}}}})
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plan-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities", "scimtargets"}, Verbs: []string{"get", "list"}}}}
		Expect(k8s.Create(ctx, role)).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plan-reader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "planner-" + ns}}})).To(Succeed())
		tenant := writeKubeconfig(envtest.User{Name: "planner-" + ns})
		var r result
		Eventually(func() error {
			r = kubectlScimAs(ctx, tenant, now, "plan", "-n", ns)
			return r.err
		}).Should(Succeed())
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+shared-bot\s+ClusterScimTarget/corp\s+Create\s+userName\s+-$`, ns))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+billing-bot\s+ScimTarget/acme\s+Update\s`, ns))
		Expect(r.Out).To(ContainSubstring("ClusterScimTarget/corp: not readable with your credentials (forbidden): its mode and plan summary are not shown\n"))
		Expect(r.Out).To(ContainSubstring("ScimTarget/" + ns + "/acme: mode Observe, planned "))
	})
})
