package stampguard

import (
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCheck(t *testing.T) {
	policy := func(guard string, mutate ...func(*admissionv1.ValidatingAdmissionPolicy)) admissionv1.ValidatingAdmissionPolicy {
		p := admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p-" + guard, Labels: map[string]string{Label: guard}},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{FailurePolicy: ptr.To(admissionv1.Fail)}}
		for _, m := range mutate {
			m(&p)
		}
		return p
	}
	binding := func(guard string, mutate ...func(*admissionv1.ValidatingAdmissionPolicyBinding)) admissionv1.ValidatingAdmissionPolicyBinding {
		b := admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "b-" + guard},
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "p-" + guard,
				ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
				// As the API server defaults a binding without match resources.
				MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{}, ObjectSelector: &metav1.LabelSelector{}}}}
		for _, m := range mutate {
			m(&b)
		}
		return b
	}
	both := []admissionv1.ValidatingAdmissionPolicy{policy(CreationStamps), policy(StatusWriters)}
	bound := []admissionv1.ValidatingAdmissionPolicyBinding{binding(CreationStamps), binding(StatusWriters)}
	if err := check(both, bound); err != nil {
		t.Fatalf("both in force: %v", err)
	}
	now := metav1.Now()
	for name, c := range map[string]struct {
		policies []admissionv1.ValidatingAdmissionPolicy
		bindings []admissionv1.ValidatingAdmissionPolicyBinding
	}{
		"nothing":                  {nil, nil},
		"status-writers missing":   {both[:1], bound[:1]},
		"a policy without binding": {both, bound[1:]},
		"Warn and Audit only": {both, []admissionv1.ValidatingAdmissionPolicyBinding{bound[0], binding(StatusWriters, func(b *admissionv1.ValidatingAdmissionPolicyBinding) {
			b.Spec.ValidationActions = []admissionv1.ValidationAction{admissionv1.Warn, admissionv1.Audit}
		})}},
		"failurePolicy Ignore": {[]admissionv1.ValidatingAdmissionPolicy{both[0], policy(StatusWriters, func(p *admissionv1.ValidatingAdmissionPolicy) {
			p.Spec.FailurePolicy = ptr.To(admissionv1.Ignore)
		})}, bound},
		"match conditions": {[]admissionv1.ValidatingAdmissionPolicy{policy(CreationStamps, func(p *admissionv1.ValidatingAdmissionPolicy) {
			p.Spec.MatchConditions = []admissionv1.MatchCondition{{Name: "never", Expression: "false"}}
		}), both[1]}, bound},
		"a policy being deleted": {[]admissionv1.ValidatingAdmissionPolicy{policy(CreationStamps, func(p *admissionv1.ValidatingAdmissionPolicy) {
			p.DeletionTimestamp = &now
		}), both[1]}, bound},
		"bound to some namespaces": {both, []admissionv1.ValidatingAdmissionPolicyBinding{binding(CreationStamps, func(b *admissionv1.ValidatingAdmissionPolicyBinding) {
			b.Spec.MatchResources.NamespaceSelector.MatchLabels = map[string]string{"team": "a"}
		}), bound[1]}},
		"bound to labelled objects": {both, []admissionv1.ValidatingAdmissionPolicyBinding{binding(CreationStamps, func(b *admissionv1.ValidatingAdmissionPolicyBinding) {
			b.Spec.MatchResources.ObjectSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "x", Operator: metav1.LabelSelectorOpExists}}
		}), bound[1]}},
		"with parameters": {both, []admissionv1.ValidatingAdmissionPolicyBinding{binding(CreationStamps, func(b *admissionv1.ValidatingAdmissionPolicyBinding) {
			b.Spec.ParamRef = &admissionv1.ParamRef{Name: "p"}
		}), bound[1]}},
		"a policy of another guard's label": {[]admissionv1.ValidatingAdmissionPolicy{both[0], policy("other")}, bound},
	} {
		if err := check(c.policies, c.bindings); err == nil {
			t.Errorf("%s: in force", name)
		}
	}
}
