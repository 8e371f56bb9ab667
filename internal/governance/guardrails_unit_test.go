package governance

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

func TestGuardrails(t *testing.T) {
	cluster := func(g *scimv1.Guardrails) *targets.Target {
		return &targets.Target{Kind: scimv1.KindClusterScimTarget, Name: "corp", Spec: &scimv1.ScimTargetSpec{Guardrails: g}}
	}
	namespaced := func(g *scimv1.Guardrails) *targets.Target {
		return &targets.Target{Kind: scimv1.KindScimTarget, Namespace: "payments", Name: "acme", Spec: &scimv1.ScimTargetSpec{Guardrails: g}}
	}
	identity := func(userName string, groups []string, attrs string) *scimv1.ServiceIdentity {
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "bot"},
			Spec: scimv1.ServiceIdentitySpec{UserName: userName, Groups: groups}}
		if attrs != "" {
			si.Spec.Attributes = &apiextensionsv1.JSON{Raw: []byte(attrs)}
		}
		return si
	}
	allow := func(names ...string) *scimv1.AllowList { return &scimv1.AllowList{Allowed: names} }
	enterprise := `{"` + scim.SchemaEnterpriseUser + `":{"department":"Payments"}}`
	for _, tc := range []struct {
		name    string
		target  *targets.Target
		si      *scimv1.ServiceIdentity
		refused string // "" means allowed
	}{
		{"cluster: default userName is namespaced", cluster(nil), identity("", nil, ""), ""},
		{"cluster: bound to the namespace", cluster(nil), identity("admin", nil, ""), `userName "admin"`},
		{"cluster: another namespace's suffix", cluster(nil), identity("x.billing", nil, ""), `userName "x.billing"`},
		{"cluster: case-insensitive suffix", cluster(nil), identity("Bot.PAYMENTS", nil, ""), ""},
		{"groups scoped to the namespace", cluster(&scimv1.Guardrails{Groups: allow("{namespace}-*")}), identity("", []string{"payments-readers"}, ""), ""},
		{"another namespace's groups", cluster(&scimv1.Guardrails{Groups: allow("{namespace}-*")}), identity("", []string{"billing-admins"}, ""), `group "billing-admins"`},
		{"cluster: an e-mail address ending in the namespace", cluster(nil), identity("ceo@acme.payments", nil, ""), `userName "ceo@acme.payments"`},
		{"cluster: userType outside the defaults", cluster(nil), func() *scimv1.ServiceIdentity {
			si := identity("", nil, "")
			si.Spec.UserType = "Employee"
			return si
		}(), `userType "Employee"`},
		{"cluster: Agent userType", cluster(nil), func() *scimv1.ServiceIdentity {
			si := identity("", nil, "")
			si.Spec.UserType = "agent"
			return si
		}(), ""},
		{"cluster: Any userNames when listed", cluster(&scimv1.Guardrails{UserNames: scimv1.UserNamesAny}), identity("admin", nil, ""), ""},
		{"cluster: no group by default", cluster(nil), identity("", []string{"readers"}, ""), `group "readers"`},
		{"cluster: group by pattern, any case", cluster(&scimv1.Guardrails{Groups: allow("Team-*")}), identity("", []string{"team-a"}, ""), ""},
		{"cluster: group outside the pattern", cluster(&scimv1.Guardrails{Groups: allow("team-*")}), identity("", []string{"admins"}, ""), `group "admins"`},
		{"cluster: empty list allows none", cluster(&scimv1.Guardrails{Groups: allow()}), identity("", []string{"x"}, ""), `group "x"`},
		{"cluster: no attribute by default", cluster(nil), identity("", nil, `{"title":"x"}`), `attribute "title"`},
		{"cluster: attribute listed", cluster(&scimv1.Guardrails{Attributes: allow("Title")}), identity("", nil, `{"title":"x"}`), ""},
		{"cluster: extension URN covers its sub-attributes", cluster(&scimv1.Guardrails{Attributes: allow(scim.SchemaEnterpriseUser)}), identity("", nil, enterprise), ""},
		{"cluster: one sub-attribute", cluster(&scimv1.Guardrails{Attributes: allow(scim.SchemaEnterpriseUser + ":department")}), identity("", nil, enterprise), ""},
		{"cluster: star does not cover password", cluster(&scimv1.Guardrails{Attributes: allow("*")}), identity("", nil, `{"password":"x"}`), `attribute "password"`},
		{"cluster: password named", cluster(&scimv1.Guardrails{Attributes: allow("password")}), identity("", nil, `{"Password":"x"}`), ""},
		{"namespaced: open by default", namespaced(nil), identity("admin", []string{"anything"}, `{"title":"x"}`), ""},
		{"namespaced: sensitive refused by default", namespaced(nil), identity("", nil, `{"Roles":[]}`), `attribute "Roles"`},
		{"namespaced: guardrails available", namespaced(&scimv1.Guardrails{UserNames: scimv1.UserNamesNamespaced, Groups: allow()}),
			identity("admin", []string{"g"}, ""), `userName "admin"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := GuardrailsOf(tc.target).Check(tc.target, tc.si)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
				t.Fatalf("want a refusal naming %s, got %v", tc.refused, err)
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "anything", true}, {"team-*", "Team-A", true}, {"team-*", "xteam-a", false}, {"*-readers", "a-readers", true},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "acb", false}, {"exact", "EXACT", true}, {"exact", "exact2", false},
		{"a*a", "a", false}, {"[x]", "[x]", true},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}
