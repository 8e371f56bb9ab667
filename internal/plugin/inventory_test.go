package plugin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

var _ = Describe("kubectl scim inventory", func() {
	var (
		ctx      context.Context
		now      time.Time
		nsA, nsB string
	)

	BeforeEach(func() {
		ctx = context.Background()
		now = time.Now().UTC().Truncate(time.Second)
		nsA, nsB = newNamespace(ctx), newNamespace(ctx)

		ready := identityIn(nsA, "billing-bot", ref("okta"), clusterRef("entra"))
		ready.Spec.Owner = "alice@example.com"
		ready.Spec.TTL = scimv1.DurationOf(720 * time.Hour)
		createIdentity(ctx, ready, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{cond(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned, "Provisioned on 2 targets", now.Add(-time.Hour))},
			Targets: []scimv1.IdentityTargetStatus{
				{Kind: scimv1.KindScimTarget, Name: "okta", ID: "u-1", Active: ptr.To(true), State: scimv1.TargetStateProvisioned, LastSyncTime: mtime(now.Add(-time.Minute))},
				{Kind: scimv1.KindClusterScimTarget, Name: "entra", ID: "u-2", Active: ptr.To(true), State: scimv1.TargetStateProvisioned, LastSyncTime: mtime(now.Add(-time.Minute))},
			},
			ExpiresAt: mtime(now.Add(30 * 24 * time.Hour)),
		})

		suspended := identityIn(nsA, "ci-bot", ref("okta"))
		suspended.Spec.Owner = "bob@example.com"
		suspended.Spec.Suspend = true
		createIdentity(ctx, suspended, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{cond(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned, "", now.Add(-time.Hour))},
			Targets:    []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "okta", Active: ptr.To(false), State: scimv1.TargetStateSuspended}},
		})

		stalled := identityIn(nsA, "etl-bot", ref("okta"))
		// A spreadsheet would run this owner as a formula.
		stalled.Spec.Owner = "=1+2@example.com"
		createIdentity(ctx, stalled, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{
				cond(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonRejected, "okta refused the account", now.Add(-10*time.Minute)),
				cond(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonRejected, "okta refused the account", now.Add(-10*time.Minute)),
			},
			Targets: []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "okta", State: scimv1.TargetStateError,
				Message: "400 invalidValue: userName \x1b[31mtaken\x1b[0m"}},
		})

		expired := identityIn(nsA, "old-bot", ref("okta"))
		expired.Spec.ExpiresAt = scimv1.TimestampOf(now.Add(-48 * time.Hour))
		createIdentity(ctx, expired, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{cond(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired, "Expired", now.Add(-48*time.Hour))},
			Targets:    []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "okta", State: scimv1.TargetStateDeprovisioned}},
			ExpiresAt:  mtime(now.Add(-48 * time.Hour)),
		})

		// Never reconciled: no status at all.
		Expect(k8s.Create(ctx, identityIn(nsB, "new-bot", ref("okta")))).To(Succeed())
	})

	It("prints a table of the namespace's identities with owner, targets and their states, state, expiry", func() {
		r := kubectlScim(ctx, now, "inventory", "-n", nsA)
		Expect(r.err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSpace(r.Out), "\n")
		Expect(lines).To(HaveLen(5))
		Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "OWNER", "TARGETS", "ACCOUNT", "STATE", "REASON", "EXPIRES", "REVIEW", "DUE"}))
		Expect(lines[1]).To(MatchRegexp(`^billing-bot\s+alice@example.com\s+ScimTarget/okta:Provisioned,ClusterScimTarget/entra:Provisioned\s+still active\s+Ready\s+Provisioned\s+%s \(in 30d\)\s+-$`,
			now.Add(30*24*time.Hour).Format(time.RFC3339)))
		Expect(lines[2]).To(MatchRegexp(`^ci-bot\s+bob@example.com\s+ScimTarget/okta:Suspended\s+off\s+Suspended\s+spec.suspend\s+-\s+-$`))
		Expect(lines[3]).To(MatchRegexp(`^etl-bot\s+=1\+2@example.com\s+ScimTarget/okta:Error\s+still active\s+Stalled\s+RejectedByTarget\s`))
		Expect(lines[4]).To(MatchRegexp(`^old-bot\s+-\s+ScimTarget/okta:Deprovisioned\s+off\s+Expired\s+Expired\s+\S+ \(2d ago\)`))
		Expect(r.Out).NotTo(ContainSubstring(nsB))
	})

	It("lists every namespace with -A, with a NAMESPACE column; an identity never reconciled is Pending", func() {
		r := kubectlScim(ctx, now, "inventory", "-A")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(HavePrefix("NAMESPACE "))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+billing-bot\s`, nsA))
		Expect(r.Out).To(MatchRegexp(`(?m)^%s\s+new-bot\s+-\s+ScimTarget/okta:Pending\s+still active\s+Pending\s+-\s+-\s+-$`, nsB))
	})

	It("prints JSON records a program can filter", func() {
		r := kubectlScim(ctx, now, "inventory", "-n", nsA, "-o", "json")
		Expect(r.err).NotTo(HaveOccurred())
		var records []map[string]any
		Expect(json.Unmarshal([]byte(r.Out), &records)).To(Succeed())
		Expect(records).To(HaveLen(4))
		Expect(records[0]).To(HaveKeyWithValue("name", "billing-bot"))
		Expect(records[0]).To(HaveKeyWithValue("namespace", nsA))
		Expect(records[0]).To(HaveKeyWithValue("owner", "alice@example.com"))
		Expect(records[0]).To(HaveKeyWithValue("state", "Ready"))
		Expect(records[0]).To(HaveKeyWithValue("userName", "billing-bot."+nsA))
		Expect(records[0]).To(HaveKeyWithValue("expiresAt", now.Add(30*24*time.Hour).Format(time.RFC3339)))
		Expect(records[0]["targets"]).To(ConsistOf(
			And(HaveKeyWithValue("kind", "ScimTarget"), HaveKeyWithValue("name", "okta"), HaveKeyWithValue("state", "Provisioned"), HaveKeyWithValue("active", true), HaveKeyWithValue("id", "u-1"),
				HaveKeyWithValue("accountOff", false), HaveKeyWithValue("evidence", "the target last showed the account active (active=true)")),
			And(HaveKeyWithValue("kind", "ClusterScimTarget"), HaveKeyWithValue("name", "entra"), HaveKeyWithValue("state", "Provisioned")),
		))
		Expect(records[0]).To(And(HaveKeyWithValue("accountOff", false), HaveKeyWithValue("stillActiveOn", ConsistOf("ScimTarget/okta", "ClusterScimTarget/entra"))))
		Expect(records[1]).To(And(HaveKeyWithValue("name", "ci-bot"), HaveKeyWithValue("state", "Suspended"), HaveKeyWithValue("suspended", true),
			HaveKeyWithValue("accountOff", true), Not(HaveKey("stillActiveOn"))))
		// Messages are shown as text, never as terminal escape sequences.
		Expect(records[2]["targets"]).To(ConsistOf(HaveKeyWithValue("message", "400 invalidValue: userName [31mtaken[0m")))
	})

	It("prints CSV with one row per identity, and no cell a spreadsheet would run as a formula", func() {
		r := kubectlScim(ctx, now, "inventory", "-n", nsA, "-o", "csv")
		Expect(r.err).NotTo(HaveOccurred())
		rows, err := csv.NewReader(strings.NewReader(r.Out)).ReadAll()
		Expect(err).NotTo(HaveOccurred())
		Expect(rows).To(HaveLen(5))
		Expect(rows[0]).To(Equal(csvHeader))
		col := func(name string) int {
			for i, h := range csvHeader {
				if h == name {
					return i
				}
			}
			Fail("no column " + name)
			return -1
		}
		Expect(rows[1][col("name")]).To(Equal("billing-bot"))
		Expect(rows[1][col("targets")]).To(Equal("ScimTarget/okta:Provisioned;ClusterScimTarget/entra:Provisioned"))
		Expect(rows[1][col("state")]).To(Equal("Ready"))
		Expect(rows[2][col("suspended")]).To(Equal("true"))
		Expect(rows[3][col("owner")]).To(Equal("'=1+2@example.com"))
		Expect(rows[3][col("state")]).To(Equal("Stalled"))
		Expect(rows[4][col("state")]).To(Equal("Expired"))
		Expect(rows[1][col("accountOff")]).To(Equal("false"))
		Expect(rows[1][col("stillActiveOn")]).To(Equal("ScimTarget/okta;ClusterScimTarget/entra"))
		Expect(rows[2][col("accountOff")]).To(Equal("true"))
		Expect(rows[2][col("stillActiveOn")]).To(BeEmpty())
	})

	It("shows the governance the operator records: owner state, review due or overdue, capped expiry", func() {
		nsG := newNamespace(ctx)
		overdue := identityIn(nsG, "report-bot", ref("okta"))
		overdue.Spec.Owner = "dave@example.com"
		overdue.Spec.Review = &scimv1.ReviewPolicy{Every: *scimv1.DurationOf(2160 * time.Hour)}
		createIdentity(ctx, overdue, scimv1.ServiceIdentityStatus{
			Conditions: []metav1.Condition{
				cond(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonReviewOverdue, "Not reviewed since 2026-08-01", now.Add(-3*24*time.Hour)),
				cond(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonReviewOverdue, "Not reviewed since 2026-08-01", now.Add(-3*24*time.Hour)),
			},
			Owner:          &scimv1.OwnerStatus{State: scimv1.OwnerInactive, Directory: "ScimTarget/" + nsG + "/okta", Message: "inactive in the directory"},
			Review:         &scimv1.ReviewStatus{Every: "2160h", LastReviewedAt: mtime(now.Add(-93 * 24 * time.Hour)), NextReviewAt: metav1.NewTime(now.Add(-3 * 24 * time.Hour))},
			Targets:        []scimv1.IdentityTargetStatus{{Kind: scimv1.KindScimTarget, Name: "okta", Active: ptr.To(false), State: scimv1.TargetStateSuspended}},
			ExpiresAt:      mtime(now.Add(10 * 24 * time.Hour)),
			ExpiryCappedBy: "ScimTarget/" + nsG + "/okta",
		})

		r := kubectlScim(ctx, now, "inventory", "-n", nsG)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`(?m)^report-bot\s+dave@example.com \(Inactive\)\s+ScimTarget/okta:Suspended\s+off\s+Suspended\s+ReviewOverdue\s+\S+ \(in 10d\)\s+%s \(overdue by 3d\)$`,
			now.Add(-3*24*time.Hour).Format(time.RFC3339)))

		r = kubectlScim(ctx, now, "inventory", "-n", nsG, "-o", "json")
		Expect(r.err).NotTo(HaveOccurred())
		var records []map[string]any
		Expect(json.Unmarshal([]byte(r.Out), &records)).To(Succeed())
		Expect(records).To(ConsistOf(And(
			HaveKeyWithValue("ownerState", "Inactive"), HaveKeyWithValue("reviewOverdue", true),
			HaveKeyWithValue("reviewEvery", "2160h"), HaveKeyWithValue("expiryCappedBy", "ScimTarget/"+nsG+"/okta"),
			HaveKeyWithValue("lastReviewedAt", now.Add(-93*24*time.Hour).Format(time.RFC3339)),
			HaveKeyWithValue("nextReviewAt", now.Add(-3*24*time.Hour).Format(time.RFC3339)),
		)))

		r = kubectlScim(ctx, now, "why", "report-bot", "-n", nsG)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(MatchRegexp(`State:\s+Suspended \(ReviewOverdue\)`))
		Expect(r.Out).To(MatchRegexp(`Owner:\s+dave@example.com \(owner Inactive: inactive in the directory\)`))
		Expect(r.Out).To(MatchRegexp(`Review:\s+every 2160h, last \S+, next \S+ \(overdue by 3d\)`))
		Expect(r.Out).To(MatchRegexp(`Expires:\s+\S+ \(in 10d\), capped by ScimTarget/%s/okta`, nsG))
	})

	It("says so when a namespace has no identities, and refuses an unknown output format", func() {
		empty := newNamespace(ctx)
		r := kubectlScim(ctx, now, "inventory", "-n", empty)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(BeEmpty())
		Expect(r.Err).To(ContainSubstring("No ServiceIdentities found in namespace " + empty))

		r = kubectlScim(ctx, now, "inventory", "-n", empty, "-o", "json")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(r.Out)).To(Equal("[]"))

		r = kubectlScim(ctx, now, "inventory", "-n", nsA, "-o", "yaml")
		Expect(r.err).To(MatchError(ContainSubstring(`--output "yaml": use table, json or csv`)))
	})
})
