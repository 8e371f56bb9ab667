package plugin

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// eventAbout writes an Event as the operator's recorder does (events.k8s.io/v1).
func eventAbout(ctx context.Context, ns string, regarding, related *corev1.ObjectReference, typ, reason, note string, at time.Time) {
	e := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "ev-"},
		EventTime:  metav1.NewMicroTime(at), ReportingController: "scim-operator", ReportingInstance: "scim-operator-test",
		Action: "Provision", Reason: reason, Note: note, Type: typ, Regarding: *regarding, Related: related,
	}
	Expect(k8s.Create(ctx, e)).To(Succeed())
}

func refTo(si *scimv1.ServiceIdentity) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: scimv1.GroupVersion.String(), Kind: "ServiceIdentity",
		Namespace: si.Namespace, Name: si.Name, UID: si.UID}
}

var _ = Describe("kubectl scim why", func() {
	var (
		ctx context.Context
		now time.Time
		ns  string
	)

	BeforeEach(func() {
		ctx = context.Background()
		now = time.Now().UTC().Truncate(time.Second)
		ns = newNamespace(ctx)
	})

	It("shows the conditions, what each target last said, and the identity's Events oldest first", func() {
		si := identityIn(ns, "etl-bot", ref("okta"), clusterRef("entra"))
		si.Spec.Owner = "carol@example.com"
		si.Spec.WorkloadRef = &scimv1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "etl"}
		si.Spec.ExpiresAt = scimv1.TimestampOf(now.Add(72 * time.Hour))
		createIdentity(ctx, si, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{
				cond(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonRejected, "entra refused the account: 400 invalidValue", now.Add(-5*time.Minute)),
				cond(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonRejected, "entra refused the account: 400 invalidValue", now.Add(-5*time.Minute)),
			},
			Targets: []scimv1.IdentityTargetStatus{
				{Kind: scimv1.KindScimTarget, Name: "okta", ID: "0c1f", UserName: "etl-bot." + ns, Active: ptr.To(true),
					State: scimv1.TargetStateProvisioned, LastSyncTime: mtime(now.Add(-2 * time.Minute))},
				{Kind: scimv1.KindClusterScimTarget, Name: "entra", State: scimv1.TargetStateError,
					Message: "400 invalidValue: \x1b]8;;http://evil\x07click\x1b]8;;\x07 attribute department"},
				// A target no longer in spec whose account is being removed.
				{Kind: scimv1.KindScimTarget, Name: "legacy", ID: "77", State: scimv1.TargetStateDeprovisioning},
			},
			ExpiresAt: mtime(now.Add(72 * time.Hour)),
			Workload:  &scimv1.WorkloadOwner{APIVersion: "apps/v1", Kind: "Deployment", Name: "etl", UID: "d-uid-1"},
		})
		// Events out of order, through both Event APIs, plus ones that are not about it.
		eventAbout(ctx, ns, refTo(si), nil, corev1.EventTypeWarning, scimv1.ReasonRejected, "Account \"etl-bot\" refused by ClusterScimTarget/entra", now.Add(-4*time.Minute))
		eventAbout(ctx, ns, refTo(si), nil, corev1.EventTypeNormal, "Adopted", "Adopted existing account on ScimTarget/okta", now.Add(-20*time.Minute))
		workload := &corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: "etl", UID: "d-uid-1"}
		eventAbout(ctx, ns, workload, refTo(si), corev1.EventTypeNormal, "IdentityCreated", "ServiceIdentity etl-bot created from the scim.nhi.dev/* annotations", now.Add(-30*time.Minute))
		eventAbout(ctx, ns, workload, nil, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set etl-1 to 1", now.Add(-25*time.Minute))
		other := identityIn(ns, "other-bot", ref("okta"))
		Expect(k8s.Create(ctx, other)).To(Succeed())
		eventAbout(ctx, ns, refTo(other), nil, corev1.EventTypeWarning, "Unrelated", "not about etl-bot", now.Add(-time.Minute))
		Expect(k8s.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: ns, GenerateName: "core-"},
			InvolvedObject: *refTo(si), Reason: "Suspended", Message: "Written through core/v1",
			Type: corev1.EventTypeNormal, Count: 3, Source: corev1.EventSource{Component: "someone"},
			FirstTimestamp: metav1.NewTime(now.Add(-15 * time.Minute)), LastTimestamp: metav1.NewTime(now.Add(-3 * time.Minute)),
		})).To(Succeed())

		r := kubectlScim(ctx, now, "why", "etl-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(HavePrefix("ServiceIdentity " + ns + "/etl-bot\n"))
		Expect(r.Out).To(MatchRegexp(`State:\s+Stalled \(RejectedByTarget\)`))
		Expect(r.Out).To(MatchRegexp(`Owner:\s+carol@example.com\n`))
		Expect(r.Out).To(MatchRegexp(`Workload:\s+Deployment etl \(apps/v1, uid d-uid-1\)`))
		Expect(r.Out).To(MatchRegexp(`Expires:\s+%s \(in 3d\)`, now.Add(72*time.Hour).Format(time.RFC3339)))
		Expect(r.Out).NotTo(ContainSubstring("Deleting:"))

		conditions := section(r.Out, "Conditions:")
		Expect(conditions).To(HaveLen(3))
		Expect(conditions[1]).To(MatchRegexp(`^\s+Ready\s+False\s+RejectedByTarget\s+5m\s+entra refused the account: 400 invalidValue$`))
		Expect(conditions[2]).To(MatchRegexp(`^\s+Stalled\s+True\s+RejectedByTarget\s+5m\s`))

		targets := section(r.Out, "Targets:")
		Expect(targets).To(HaveLen(4))
		Expect(strings.Fields(targets[0])).To(Equal([]string{"TARGET", "STATE", "ACTIVE", "ACCOUNT", "ID", "USERNAME", "LAST", "SYNC", "MESSAGE"}))
		Expect(targets[1]).To(MatchRegexp(`^\s+ScimTarget/okta\s+Provisioned\s+true\s+still active\s+0c1f\s+etl-bot\.%s\s+\S+ \(2m ago\)\s+-$`, ns))
		// The escape sequences (a terminal hyperlink here) are removed, the text kept.
		Expect(targets[2]).To(MatchRegexp(`^\s+ClusterScimTarget/entra\s+Error\s+-\s+still active\s+-\s+-\s+-\s+400 invalidValue: \]8;;http://evilclick\]8;; attribute department$`))
		Expect(targets[3]).To(MatchRegexp(`^\s+ScimTarget/legacy \(removed from spec\)\s+Deprovisioning\s+-\s+still active\s+77\s`))
		Expect(r.Out).To(MatchRegexp(`Accounts:\s+still active on 3 of 3 target\(s\): ScimTarget/okta: the target last showed the account active \(active=true\); ` +
			`ClusterScimTarget/entra: no evidence from the target that the account is inactive \(state Error\); ScimTarget/legacy: no evidence`))
		Expect(r.Out).NotTo(ContainSubstring("\x1b"))

		events := section(r.Out, "Events (oldest first):")
		Expect(events).To(HaveLen(5))
		Expect(events[1]).To(MatchRegexp(`^\s+30m\s+Normal\s+IdentityCreated\s+Deployment/etl\s+ServiceIdentity etl-bot created`))
		Expect(events[2]).To(MatchRegexp(`^\s+20m\s+Normal\s+Adopted\s+ServiceIdentity/etl-bot\s`))
		Expect(events[3]).To(MatchRegexp(`^\s+4m\s+Warning\s+RejectedByTarget\s+ServiceIdentity/etl-bot\s+Account "etl-bot" refused by ClusterScimTarget/entra$`))
		Expect(events[4]).To(MatchRegexp(`^\s+3m \(x3\)\s+Normal\s+Suspended\s+ServiceIdentity/etl-bot\s+Written through core/v1$`))
		Expect(r.Out).NotTo(ContainSubstring("not about etl-bot"))
		Expect(r.Out).NotTo(ContainSubstring("ScalingReplicaSet"))

		By("--events keeps the most recent ones")
		r = kubectlScim(ctx, now, "why", "etl-bot", "-n", ns, "--events", "1")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(section(r.Out, "Events (oldest first):")).To(HaveLen(2))
		Expect(r.Out).To(ContainSubstring("Written through core/v1"))
	})

	It("shows the deletion in progress, the finalizers holding it, and a suspension's reason", func() {
		si := identityIn(ns, "leaving-bot", ref("okta"))
		si.Finalizers = []string{scimv1.DeprovisionFinalizer}
		si.Spec.Suspend = true
		si.Annotations = map[string]string{revokedReasonKey: "INC-7: key leaked"}
		createIdentity(ctx, si, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{cond(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked, "okta unreachable", now.Add(-time.Minute))},
			Targets:    []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "okta", State: scimv1.TargetStateError, Message: "dial tcp: connection refused"}},
		})
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(k8s.Patch(ctx, si, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		})

		r := kubectlScim(ctx, time.Time{}, "why", "leaving-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`State:\s+Deleting \(DeprovisionBlocked\)`))
		Expect(r.Out).To(MatchRegexp(`Deleting:\s+since \S+ \(\S+ ago\); finalizers: scim.nhi.dev/deprovision`))
		Expect(r.Out).To(MatchRegexp(`Suspended:\s+spec.suspend=true: the operator sets every account active=false; revoked: INC-7: key leaked`))
		Expect(r.Out).To(MatchRegexp(`Workload:\s+- \(none`))
		Expect(r.Out).To(MatchRegexp(`Expires:\s+- \(no expiry\)`))
		Expect(r.Out).To(ContainSubstring("dial tcp: connection refused"))
		Expect(section(r.Out, "Events (oldest first):")).To(ConsistOf(ContainSubstring("<none>")))
	})

	It("says that an identity was never reconciled", func() {
		Expect(k8s.Create(ctx, identityIn(ns, "new-bot", ref("okta")))).To(Succeed())
		r := kubectlScim(ctx, time.Time{}, "why", "new-bot", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`State:\s+Pending\n`))
		Expect(section(r.Out, "Conditions:")).To(ConsistOf(ContainSubstring("the operator has not reported")))
		Expect(section(r.Out, "Targets:")[1]).To(MatchRegexp(`^\s+ScimTarget/okta\s+Pending\s+-`))
	})

	It("fails naming the identity and namespace when there is no such identity", func() {
		r := kubectlScim(ctx, time.Time{}, "why", "ghost", "-n", ns)
		Expect(r.err).To(MatchError(`serviceidentity "ghost" not found in namespace "` + ns + `"`))
		Expect(r.Err).To(ContainSubstring(`Error: serviceidentity "ghost" not found`))
		r = kubectlScim(ctx, time.Time{}, "why", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring("accepts 1 arg(s), received 0")))
	})

	It("still explains the identity to a user who may not read Events, with a warning", func() {
		Expect(k8s.Create(ctx, identityIn(ns, "bot", ref("okta")))).To(Succeed())
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "identity-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"}, Verbs: []string{"get", "list"}}}}
		Expect(k8s.Create(ctx, role)).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "identity-reader"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "reader-" + ns}}})).To(Succeed())
		reader := writeKubeconfig(envtest.User{Name: "reader-" + ns})

		var r result
		// RBAC reaches the authorizer's cache shortly after the RoleBinding is written.
		Eventually(func() error {
			r = kubectlScimAs(ctx, reader, time.Time{}, "why", "bot", "-n", ns)
			return r.err
		}).Should(Succeed())
		Expect(r.Out).To(MatchRegexp(`State:\s+Pending\n`))
		Expect(r.Err).To(ContainSubstring("Warning: Events not shown"))
		Expect(r.Err).To(ContainSubstring("forbidden"))
		Expect(section(r.Out, "Events (oldest first):")).To(ConsistOf(ContainSubstring("<not shown: listing events:")))

		By("and who may not patch identities cannot review or revoke")
		r = kubectlScimAs(ctx, reader, time.Time{}, "review", "bot", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring("forbidden")))
		r = kubectlScimAs(ctx, reader, time.Time{}, "revoke", "bot", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring("forbidden")))
		Expect(get(ctx, ns, "bot").Spec.Suspend).To(BeFalse())
	})
})

// section returns the lines of a why section after its heading, up to the next blank line.
func section(out, heading string) []string {
	_, rest, ok := strings.Cut(out, "\n"+heading+"\n")
	Expect(ok).To(BeTrue(), "no section %q in:\n%s", heading, out)
	body, _, _ := strings.Cut(rest, "\n\n")
	return strings.Split(strings.TrimRight(body, "\n"), "\n")
}
