package dialect

import (
	"reflect"
	"testing"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

func TestAsKind(t *testing.T) {
	user := func() scim.Resource {
		return scim.Resource{"externalId": "c/ns/bot", "userName": "bot.ns", "active": true, "displayName": "Bot",
			"schemas": []any{scim.SchemaUser, scim.SchemaEnterpriseUser}}
	}
	agentKind := TypeOf(&targets.Target{Status: &scimv1.ScimTargetStatus{ResourceType: &scimv1.ResourceTypeStatus{Name: "Agent", Endpoint: "/Agents", Schema: SchemaAgent}}})
	fallback := TypeOf(&targets.Target{Status: &scimv1.ScimTargetStatus{ResourceType: &scimv1.ResourceTypeStatus{Name: "Agent", Endpoint: "/Users", Schema: scim.SchemaUser}}})
	custom := TypeOf(&targets.Target{Status: &scimv1.ScimTargetStatus{ResourceType: &scimv1.ResourceTypeStatus{Name: "ServicePrincipal", Endpoint: "/ServicePrincipals", Schema: "urn:example:ServicePrincipal"}}})
	for _, tc := range []struct {
		name string
		kind AccountType
		in   scim.Resource
		want scim.Resource
	}{
		{"a User stays as it is", UserType, user(), user()},
		{"an Agent is named by name and has the Agent schema", agentKind, user(),
			scim.Resource{"externalId": "c/ns/bot", "name": "bot.ns", "active": true, "displayName": "Bot", "schemas": []any{SchemaAgent, scim.SchemaEnterpriseUser}}},
		{"an Agent drops the User's userType", agentKind, func() scim.Resource { u := user(); u["userType"] = "Service"; return u }(),
			scim.Resource{"externalId": "c/ns/bot", "name": "bot.ns", "active": true, "displayName": "Bot", "schemas": []any{SchemaAgent, scim.SchemaEnterpriseUser}}},
		{"a User standing in for an Agent says userType Agent", fallback, user(),
			func() scim.Resource { u := user(); u["userType"] = "Agent"; return u }()},
		{"the schema's default userType gives way to Agent", fallback, func() scim.Resource { u := user(); u["userType"] = "ServiceAccount"; return u }(),
			func() scim.Resource { u := user(); u["userType"] = "Agent"; return u }()},
		{"the spec's own userType wins over Agent", fallback, func() scim.Resource { u := user(); u["userType"] = "Service"; return u }(),
			func() scim.Resource { u := user(); u["userType"] = "Service"; return u }()},
		{"a provider's own type keeps the User attributes under its schema", custom, user(),
			scim.Resource{"externalId": "c/ns/bot", "userName": "bot.ns", "active": true, "displayName": "Bot", "schemas": []any{"urn:example:ServicePrincipal", scim.SchemaEnterpriseUser}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			before := reflect.ValueOf(in["schemas"]).Index(0).Interface()
			if got := AsType(in, tc.kind); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("asKind =\n%v\nwant\n%v", got, tc.want)
			}
			if after := reflect.ValueOf(in["schemas"]).Index(0).Interface(); after != before {
				t.Fatalf("the desired User was modified: schemas[0] %v -> %v", before, after)
			}
		})
	}
	if custom.Endpoint != "ServicePrincipals" || agentKind.NameAttr != "name" || fallback.Endpoint != "Users" {
		t.Fatalf("kinds: %+v %+v %+v", custom, agentKind, fallback)
	}
}

func TestResourceTypeChoiceIsKept(t *testing.T) {
	for _, tc := range []struct {
		rt   *scimv1.ResourceTypeStatus
		want string
		kept bool
	}{
		{nil, "", false},
		{&scimv1.ResourceTypeStatus{Name: "User"}, "", true},
		{&scimv1.ResourceTypeStatus{Name: "User"}, "User", true},
		{&scimv1.ResourceTypeStatus{Name: "Agent", Schema: scim.SchemaUser}, "Agent", true},
		{&scimv1.ResourceTypeStatus{Name: "Agent", Schema: SchemaAgent}, "Agent", true},
		{&scimv1.ResourceTypeStatus{Name: "User"}, "Agent", false},
		{&scimv1.ResourceTypeStatus{Name: "servicePrincipal"}, "ServicePrincipal", true},
	} {
		if got := ResolvedFor(tc.rt, tc.want); got != tc.kept {
			t.Errorf("resolvedFor(%+v, %q) = %v, want %v", tc.rt, tc.want, got, tc.kept)
		}
	}
	for e, ok := range map[string]bool{"/Agents": true, "/Service_Principals-2": true, "Agents": false, "/": false, "/a/b": false, "/../x": false, "/Agents?x": false} {
		if validEndpoint(e) != ok {
			t.Errorf("validEndpoint(%q) = %v, want %v", e, !ok, ok)
		}
	}
}

func TestWZDKAgents(t *testing.T) {
	rt := &scimv1.ResourceTypeStatus{Name: "Agent", Endpoint: "/Agents", Schema: SchemaAgent, NameAttribute: AgentNameWZDK}
	tgt := &targets.Target{Kind: scimv1.KindScimTarget, Namespace: "ns", Name: "apps",
		Spec: &scimv1.ScimTargetSpec{Endpoint: "https://apps.example.com/scim/v2/"}, Status: &scimv1.ScimTargetStatus{ResourceType: rt}}
	k := TypeOf(tgt)
	if !k.IsWZDK() || k.NameAttr != "agentUserName" {
		t.Fatalf("kind %+v", k)
	}
	got := AsType(scim.Resource{"userName": "bot.ns", "active": true, "schemas": []any{scim.SchemaUser}}, k)
	want := scim.Resource{"agentUserName": "bot.ns", "displayName": "bot.ns", "active": true, "schemas": []any{SchemaAgent}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("AsType = %v, want %v", got, want)
	}
	owner := &scimv1.OwnerStatus{State: scimv1.OwnerActive, Directory: "ScimTarget/ns/people, " + tgt.Key(), Accounts: []scimv1.OwnerAccount{
		{Directory: "ScimTarget/ns/people", ID: "elsewhere"}, {Directory: tgt.Key(), ID: "u 1"}}}
	withOwners := WithOwners(got, k, tgt, owner)
	wantOwners := []any{map[string]any{"value": "u 1", "$ref": "https://apps.example.com/scim/v2/Users/u%201"}}
	if !reflect.DeepEqual(withOwners["owners"], wantOwners) {
		t.Fatalf("owners = %v, want %v", withOwners["owners"], wantOwners)
	}
	if _, ok := got["owners"]; ok {
		t.Fatal("WithOwners modified its input")
	}
	for name, tc := range map[string]struct {
		k       AccountType
		owner   *scimv1.OwnerStatus
		removed bool // owners: null (removed), else left out (untouched)
	}{
		"an abbey Agent has no owners to write":      {TypeOf(&targets.Target{Status: &scimv1.ScimTargetStatus{ResourceType: &scimv1.ResourceTypeStatus{Name: "Agent", Endpoint: "/Agents", Schema: SchemaAgent}}}), owner, false},
		"a User has no owners":                       {UserType, owner, false},
		"no owner status":                            {k, nil, false},
		"the directory did not answer":               {k, &scimv1.OwnerStatus{State: scimv1.OwnerUnchecked, Directory: owner.Directory}, false},
		"the target is not an owner directory":       {k, &scimv1.OwnerStatus{State: scimv1.OwnerActive, Directory: "ScimTarget/ns/people", Accounts: owner.Accounts[:1]}, false},
		"an inactive owner is removed":               {k, &scimv1.OwnerStatus{State: scimv1.OwnerInactive, Directory: owner.Directory}, true},
		"an owner with no usable id here is removed": {k, &scimv1.OwnerStatus{State: scimv1.OwnerActive, Directory: owner.Directory, Accounts: owner.Accounts[:1]}, true},
	} {
		out := WithOwners(got, tc.k, tgt, tc.owner)
		v, present := out["owners"]
		if v != nil || present != tc.removed {
			t.Errorf("%s: owners %v (present %v)", name, v, present)
		}
	}

	// The kind's own schema URN as a key (RFC 7644 §3.10: its core attributes) and another
	// spelling of the name never reach the provider.
	smuggled := AsType(scim.Resource{"userName": "bot.ns", "active": true, "AgentUserName": "ceo-bot",
		"URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:AGENT": map[string]any{"owners": []any{map[string]any{"value": "victim"}}}}, k)
	if want := (scim.Resource{"agentUserName": "bot.ns", "displayName": "bot.ns", "active": true}); !reflect.DeepEqual(smuggled, want) {
		t.Fatalf("AsType = %v, want %v", smuggled, want)
	}
}
