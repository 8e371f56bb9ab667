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
// with it, failurePolicy Fail, and a binding of it whose actions include Deny. When not, the
// error says what is missing.
func InForce(ctx context.Context, c client.Reader) error {
	policies := &admissionv1.ValidatingAdmissionPolicyList{}
	if err := c.List(ctx, policies, client.HasLabels{Label}); err != nil {
		return fmt.Errorf("listing ValidatingAdmissionPolicies: %w", err)
	}
	bindings := &admissionv1.ValidatingAdmissionPolicyBindingList{}
	if err := c.List(ctx, bindings); err != nil {
		return fmt.Errorf("listing ValidatingAdmissionPolicyBindings: %w", err)
	}
	var missing []string
	for _, guard := range Required {
		if !inForce(guard, policies.Items, bindings.Items) {
			missing = append(missing, guard)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no ValidatingAdmissionPolicy labelled %s=%s with failurePolicy Fail and a binding that denies",
			Label, strings.Join(missing, " or "))
	}
	return nil
}

func inForce(guard string, policies []admissionv1.ValidatingAdmissionPolicy, bindings []admissionv1.ValidatingAdmissionPolicyBinding) bool {
	for _, p := range policies {
		if p.Labels[Label] != guard || !p.DeletionTimestamp.IsZero() ||
			(p.Spec.FailurePolicy != nil && *p.Spec.FailurePolicy != admissionv1.Fail) {
			continue
		}
		for _, b := range bindings {
			if b.Spec.PolicyName == p.Name && b.DeletionTimestamp.IsZero() && slices.Contains(b.Spec.ValidationActions, admissionv1.Deny) {
				return true
			}
		}
	}
	return false
}
