package account

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// TargetPolicy is the target's own deletionPolicy (Delete when unset).
func TargetPolicy(t *targets.Target) scimv1.DeletionPolicy {
	if t.Spec.DeletionPolicy != "" {
		return t.Spec.DeletionPolicy
	}
	return scimv1.DeletionPolicyDelete
}

// identityPolicies is what an identity may choose in spec.deletionPolicy on t: the target's
// guardrails.deletionPolicies, else Delete and Deactivate on a ClusterScimTarget and any on a
// ScimTarget.
func identityPolicies(t *targets.Target) []scimv1.DeletionPolicy {
	if g := t.Spec.Guardrails; g != nil && len(g.DeletionPolicies) > 0 {
		return g.DeletionPolicies
	}
	if t.ClusterScoped() {
		return []scimv1.DeletionPolicy{scimv1.DeletionPolicyDelete, scimv1.DeletionPolicyDeactivate}
	}
	return []scimv1.DeletionPolicy{scimv1.DeletionPolicyDelete, scimv1.DeletionPolicyDeactivate, scimv1.DeletionPolicyOrphan}
}

// DeletionPolicyRefused says why the identity's own deletionPolicy does not count on t ("":
// it does, or it sets none).
func DeletionPolicyRefused(t *targets.Target, si *scimv1.ServiceIdentity) string {
	p := si.Spec.DeletionPolicy
	if p == nil || slices.Contains(identityPolicies(t), *p) {
		return ""
	}
	return fmt.Sprintf("deletionPolicy %q (allowed: %v; the target's deletionPolicy %s applies)", *p, identityPolicies(t), TargetPolicy(t))
}

// Killed reports why the kill switch or governance holds an identity ("" when neither does):
// spec.suspend, or a suspension by governance (review overdue, owner inactive under Suspend)
// recorded on its status. While it holds, no deprovisioning leaves an account active.
func Killed(si *scimv1.ServiceIdentity) string {
	if si.Spec.Suspend {
		return "spec.suspend is set"
	}
	if c := meta.FindStatusCondition(si.Status.Conditions, scimv1.ConditionReady); c != nil && c.Status != "True" &&
		(c.Reason == scimv1.ReasonReviewOverdue || c.Reason == scimv1.ReasonOwnerInactive) {
		return "suspended by governance (" + c.Reason + ")"
	}
	return ""
}

// Revocation is why an identity's accounts are taken away: the cause, and whether the kill
// switch or governance holds the identity at the same time.
type Revocation struct {
	Cause Cause
	// Kill is why the Kill switch or governance holds the identity ("" when neither does).
	Kill string
}

// EffectivePolicy is the one decision of what a deprovisioning does to an account on t. The
// identity's own deletionPolicy counts only where the target's guardrails allow it; the
// target's policy governs a withdrawal and an expiry under the target's maxTTL; a suspension
// deactivates. Orphan never leaves an account active when the target's owner withdrew the
// namespace, when maxTTL ended the identity, or while the kill switch or governance holds it:
// those deactivate instead.
func EffectivePolicy(t *targets.Target, si *scimv1.ServiceIdentity, r Revocation) scimv1.DeletionPolicy {
	if r.Cause == CauseSuspended {
		return scimv1.DeletionPolicyDeactivate // kept, inactive, until the suspension ends
	}
	policy := TargetPolicy(t)
	if si.Spec.DeletionPolicy != nil && DeletionPolicyRefused(t, si) == "" {
		policy = *si.Spec.DeletionPolicy
	}
	targetRules := r.Cause == CauseWithdrawn ||
		(r.Cause == CauseExpired && (si.Status.ExpiryCappedBy != "" || (t.Spec.Governance != nil && t.Spec.Governance.MaxTTL != nil)))
	if targetRules {
		policy = TargetPolicy(t)
	}
	if policy == scimv1.DeletionPolicyOrphan && (targetRules || r.Kill != "") {
		policy = scimv1.DeletionPolicyDeactivate
	}
	return policy
}
