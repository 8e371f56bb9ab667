// Package stampguard tells whether the admission policies that make a ServiceIdentity's
// creation stamps trustworthy are in force: config/admission's creation-stamps (no one but the
// operator forges or changes the stamps) and status-writers (no one but the operator writes the
// status whose first write ends what the stamps say). The operator relies on the stamps of an
// identity on a ClusterScimTarget only while both are found, each with a binding that denies;
// a flag alone (--creation-stamps-guarded) is a promise an install can break (a policy never
// applied, deleted later, or bound in Warn or Audit mode).
package stampguard

import (
	"context"
	"fmt"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Label marks the ValidatingAdmissionPolicies of config/admission the operator relies on; its
// value names the guard.
const Label = "scim.nhi.dev/guards"

// The guards the creation stamps need.
const (
	CreationStamps = "creation-stamps"
	StatusWriters  = "status-writers"
)

// Required are the guards that must all be in force.
var Required = []string{CreationStamps, StatusWriters}

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get;list;watch

// InForce says whether every required guard is in force: a ValidatingAdmissionPolicy labelled
// with it, with failurePolicy Fail, no match conditions and no parameters, and a binding of it
// that denies, to every object (no match resources narrower than the policy's, no parameters).
// When not, the error says what is missing.
func InForce(ctx context.Context, c client.Reader) error {
	policies := &admissionv1.ValidatingAdmissionPolicyList{}
	if err := c.List(ctx, policies, client.HasLabels{Label}); err != nil {
		return fmt.Errorf("listing ValidatingAdmissionPolicies: %w", err)
	}
	bindings := &admissionv1.ValidatingAdmissionPolicyBindingList{}
	if err := c.List(ctx, bindings); err != nil {
		return fmt.Errorf("listing ValidatingAdmissionPolicyBindings: %w", err)
	}
	return check(policies.Items, bindings.Items)
}

func check(policies []admissionv1.ValidatingAdmissionPolicy, bindings []admissionv1.ValidatingAdmissionPolicyBinding) error {
	var missing []string
	for _, guard := range Required {
		if !inForce(guard, policies, bindings) {
			missing = append(missing, guard)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no ValidatingAdmissionPolicy labelled %s=%s with failurePolicy Fail, bound to every object with Deny",
			Label, strings.Join(missing, " or "))
	}
	return nil
}

func inForce(guard string, policies []admissionv1.ValidatingAdmissionPolicy, bindings []admissionv1.ValidatingAdmissionPolicyBinding) bool {
	for _, p := range policies {
		if p.Labels[Label] != guard || !p.DeletionTimestamp.IsZero() || len(p.Spec.MatchConditions) > 0 || p.Spec.ParamKind != nil ||
			(p.Spec.FailurePolicy != nil && *p.Spec.FailurePolicy != admissionv1.Fail) {
			continue
		}
		for _, b := range bindings {
			if b.Spec.PolicyName == p.Name && b.DeletionTimestamp.IsZero() && b.Spec.ParamRef == nil &&
				slices.Contains(b.Spec.ValidationActions, admissionv1.Deny) && everything(b.Spec.MatchResources) {
				return true
			}
		}
	}
	return false
}

// everything says whether a binding's match resources leave the policy's own alone.
func everything(m *admissionv1.MatchResources) bool {
	empty := func(s *metav1.LabelSelector) bool {
		return s == nil || len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
	}
	return m == nil || empty(m.NamespaceSelector) && empty(m.ObjectSelector) && len(m.ResourceRules) == 0 && len(m.ExcludeResourceRules) == 0
}
