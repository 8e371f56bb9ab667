package account

import (
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// effectivePolicy is the one decision of what a deprovisioning does: each row is a way a
// tenant could try to keep an account active, and what applies instead.
func TestEffectivePolicy(t *testing.T) {
	const (
		del, deact, orphan = scimv1.DeletionPolicyDelete, scimv1.DeletionPolicyDeactivate, scimv1.DeletionPolicyOrphan
	)
	target := func(kind string, policy scimv1.DeletionPolicy, allowed []scimv1.DeletionPolicy, maxTTL bool) *targets.Target {
		spec := &scimv1.ScimTargetSpec{DeletionPolicy: policy}
		if allowed != nil {
			spec.Guardrails = &scimv1.Guardrails{DeletionPolicies: allowed}
		}
		if maxTTL {
			spec.Governance = &scimv1.Governance{MaxTTL: ptr.To(scimv1.Duration("1h"))}
		}
		return &targets.Target{Kind: kind, Name: "t", Spec: spec}
	}
	identity := func(p *scimv1.DeletionPolicy, capped string) *scimv1.ServiceIdentity {
		return &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bot"},
			Spec: scimv1.ServiceIdentitySpec{DeletionPolicy: p}, Status: scimv1.ServiceIdentityStatus{ExpiryCappedBy: capped}}
	}
	cst, st := scimv1.KindClusterScimTarget, scimv1.KindScimTarget
	for _, tc := range []struct {
		name string
		t    *targets.Target
		si   *scimv1.ServiceIdentity
		rv   Revocation
		want scimv1.DeletionPolicy
	}{
		{"the target's default", target(st, "", nil, false), identity(nil, ""), Revocation{Cause: CauseRetired}, del},
		{"a tenant's Orphan on its own target", target(st, del, nil, false), identity(ptr.To(orphan), ""), Revocation{Cause: CauseRetired}, orphan},
		{"a tenant's Orphan on a cluster target (not allowed by default)", target(cst, del, nil, false), identity(ptr.To(orphan), ""), Revocation{Cause: CauseExpired}, del},
		{"a tenant's Deactivate on a cluster target", target(cst, del, nil, false), identity(ptr.To(deact), ""), Revocation{Cause: CauseRetired}, deact},
		{"Orphan allowed on a cluster target by its guardrails", target(cst, del, []scimv1.DeletionPolicy{orphan}, false), identity(ptr.To(orphan), ""), Revocation{Cause: CauseRetired}, orphan},
		{"Orphan refused on a namespaced target by its guardrails", target(st, deact, []scimv1.DeletionPolicy{del}, false), identity(ptr.To(orphan), ""), Revocation{Cause: CauseRetired}, deact},
		{"a withdrawal follows the target", target(st, del, nil, false), identity(ptr.To(deact), ""), Revocation{Cause: CauseWithdrawn}, del},
		{"a withdrawal never orphans", target(st, orphan, nil, false), identity(nil, ""), Revocation{Cause: CauseWithdrawn}, deact},
		{"an expiry maxTTL capped follows the target", target(st, del, nil, true), identity(ptr.To(orphan), "t (maxTTL 1h)"), Revocation{Cause: CauseExpired}, del},
		{"an expiry under maxTTL, the identity's own ttl shorter", target(st, del, nil, true), identity(ptr.To(orphan), ""), Revocation{Cause: CauseExpired}, del},
		{"an expiry under maxTTL on an Orphan target", target(st, orphan, nil, true), identity(nil, ""), Revocation{Cause: CauseExpired}, deact},
		{"an expiry without maxTTL keeps the tenant's Orphan", target(st, del, nil, false), identity(ptr.To(orphan), ""), Revocation{Cause: CauseExpired}, orphan},
		{"the kill switch turns Orphan into Deactivate (expiry)", target(st, del, nil, false), identity(ptr.To(orphan), ""), Revocation{Cause: CauseExpired, Kill: "spec.suspend is set"}, deact},
		{"the kill switch turns Orphan into Deactivate (deletion)", target(st, orphan, nil, false), identity(nil, ""), Revocation{Cause: CauseRetired, Kill: "governance"}, deact},
		{"the kill switch keeps Delete", target(st, del, nil, false), identity(nil, ""), Revocation{Cause: CauseRetired, Kill: "spec.suspend is set"}, del},
		{"a suspension deactivates", target(st, del, nil, false), identity(ptr.To(del), ""), Revocation{Cause: CauseSuspended}, deact},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EffectivePolicy(tc.t, tc.si, tc.rv); got != tc.want {
				t.Fatalf("effectivePolicy = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestKilled(t *testing.T) {
	si := &scimv1.ServiceIdentity{}
	if Killed(si) != "" {
		t.Fatal("killed without a suspension")
	}
	si.Status.Conditions = []metav1.Condition{{Type: scimv1.ConditionReady, Status: metav1.ConditionFalse, Reason: scimv1.ReasonReviewOverdue}}
	if Killed(si) == "" {
		t.Fatal("a review overdue does not hold the identity")
	}
	si.Status.Conditions[0].Reason = scimv1.ReasonExpired
	si.Spec.Suspend = true
	if Killed(si) != "spec.suspend is set" {
		t.Fatal("spec.suspend does not hold the identity")
	}
}

// A PATCH refused on one endpoint switches that endpoint only, and only for dialect.PatchRefusalTTL.
func TestPatchRefusalIsPerEndpointAndExpires(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	d := &dialect.Observed{Clock: clk}
	tg := &targets.Target{Kind: scimv1.KindScimTarget, Namespace: "ns", Name: "t", Spec: &scimv1.ScimTargetSpec{}, Status: &scimv1.ScimTargetStatus{}}
	a := &Session{t: tg, kind: dialect.TypeOf(tg), dialects: d}
	a.patchRefused(dialect.UsersEndpoint, errors.New("501"))
	if a.usePatchOn(dialect.UsersEndpoint) || !a.usePatchOn(groupsEndpoint) {
		t.Fatalf("after a refusal on /Users: users PATCH=%v groups PATCH=%v, want false, true", a.usePatchOn(dialect.UsersEndpoint), a.usePatchOn(groupsEndpoint))
	}
	if got := d.All(tg.Key()); len(got) != 1 || got[dialect.AdaptPatchRefused] == "" {
		t.Fatalf("status dialect.Adaptations = %v, want one PatchRefused", got)
	}
	clk.SetTime(clk.Now().Add(dialect.PatchRefusalTTL))
	if !a.usePatchOn(dialect.UsersEndpoint) {
		t.Fatal("PATCH is never tried again after a refusal")
	}
	if got := d.All(tg.Key()); len(got) != 0 {
		t.Fatalf("an expired refusal is still shown: %v", got)
	}
}
func TestNamespaceOf(t *testing.T) {
	for in, want := range map[string]string{"c1/ns/name": "ns", "c1/ns": "", "c2/ns/name": "", "": "", "c1//x": ""} {
		if got := namespaceOf("c1", in); got != want {
			t.Errorf("namespaceOf(%q) = %q, want %q", in, got, want)
		}
	}
}
