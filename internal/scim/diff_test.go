package scim

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// bots is an extension schema the tests set alongside the enterprise one.
const bots = "urn:example:params:scim:schemas:extension:bots:2.0:User"

// desiredBot is what an identity asks for: the attributes the operator owns.
func desiredBot() Resource {
	return Resource{
		"schemas":    []any{SchemaUser},
		"externalId": "cluster-1/payments/bot",
		"userName":   "bot.payments",
		"active":     true,
		"userType":   "ServiceAccount",
	}
}

// absent, as a value given to with, deletes the attribute.
type absentValue struct{}

var absent = absentValue{}

// with returns a copy of r with the given attributes set (nil sets null), or deleted (absent).
func with(r Resource, kv ...any) Resource {
	out := Resource{}
	for k, v := range r {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == absent {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// provided is desiredBot as a provider returns it: with an id, meta, and attributes others set.
func provided(kv ...any) Resource {
	base := with(desiredBot(), "id", "2819c223", "meta", map[string]any{"resourceType": "User", "version": `W/"1"`},
		"title", "set by the IdP admin", "groups", []any{map[string]any{"value": "g1"}})
	return with(base, kv...)
}

func replaceOp(path string, value any) PatchOp {
	return PatchOp{Op: "replace", Path: path, Value: value}
}

func TestDiff(t *testing.T) {
	ent := func(path string) string { return SchemaEnterpriseUser + ":" + path }
	email := func(value, typ string, extra ...any) map[string]any {
		e := map[string]any{"value": value, "type": typ}
		for i := 0; i < len(extra); i += 2 {
			e[extra[i].(string)] = extra[i+1]
		}
		return e
	}
	for _, tc := range []struct {
		name             string
		desired, current Resource
		want             []PatchOp
	}{
		{"equal resources: nothing to send", desiredBot(), provided(), nil},
		{"no current resource: every attribute", desiredBot(), nil, []PatchOp{
			replaceOp("active", true), replaceOp("externalId", "cluster-1/payments/bot"),
			replaceOp("userName", "bot.payments"), replaceOp("userType", "ServiceAccount")}},
		{"changed simple attribute", with(desiredBot(), "displayName", "Payments bot"), provided("displayName", "Old bot"),
			[]PatchOp{replaceOp("displayName", "Payments bot")}},
		{"attribute missing on the provider: replace adds it", with(desiredBot(), "displayName", "Payments bot"), provided(),
			[]PatchOp{replaceOp("displayName", "Payments bot")}},
		{"attribute names in another case on the provider", with(desiredBot(), "displayName", "Bot"),
			Resource{"ID": "1", "ExternalId": "cluster-1/payments/bot", "USERNAME": "bot.payments", "Active": true,
				"usertype": "ServiceAccount", "DisplayName": "Bot"}, nil},
		{"userName differing in case only (caseExact false)", desiredBot(), provided("userName", "Bot.Payments"), nil},
		{"userName that is not a string", desiredBot(), provided("userName", 7.0), []PatchOp{replaceOp("userName", "bot.payments")}},
		{"other values are case-exact", with(desiredBot(), "displayName", "Bot"), provided("displayName", "BOT"),
			[]PatchOp{replaceOp("displayName", "Bot")}},
		{"externalId is case-exact", desiredBot(), provided("externalId", "CLUSTER-1/payments/bot"),
			[]PatchOp{replaceOp("externalId", "cluster-1/payments/bot")}},
		{"value of another type", with(desiredBot(), "displayName", "7"), provided("displayName", 7.0),
			[]PatchOp{replaceOp("displayName", "7")}},

		{"active false, missing on the provider", with(desiredBot(), "active", false), provided("active", absent),
			[]PatchOp{replaceOp("active", false)}},
		{"active false, true on the provider", with(desiredBot(), "active", false), provided("active", true),
			[]PatchOp{replaceOp("active", false)}},
		{"active false, null on the provider", with(desiredBot(), "active", false), provided("active", nil),
			[]PatchOp{replaceOp("active", false)}},
		{"active sent as the string \"True\"", desiredBot(), provided("active", "True"), nil},
		{"active sent as the string \"false\"", with(desiredBot(), "active", false), provided("active", "false"), nil},
		{"active true, the string \"false\" on the provider", desiredBot(), provided("active", "false"),
			[]PatchOp{replaceOp("active", true)}},

		{"complex attribute: only the sub-attribute that differs",
			with(desiredBot(), "name", map[string]any{"givenName": "Payments", "familyName": "Bot"}),
			provided("name", map[string]any{"givenName": "Payments", "familyName": "Robot", "middleName": "set by others"}),
			[]PatchOp{replaceOp("name.familyName", "Bot")}},
		{"complex attribute: sub-attribute names in another case",
			with(desiredBot(), "name", map[string]any{"givenName": "Payments"}),
			provided("Name", map[string]any{"GivenName": "Payments", "formatted": "x"}), nil},
		{"complex attribute missing on the provider: each sub-attribute, in order",
			with(desiredBot(), "name", map[string]any{"givenName": "Payments", "familyName": "Bot"}), provided(),
			[]PatchOp{replaceOp("name.familyName", "Bot"), replaceOp("name.givenName", "Payments")}},
		{"complex attribute that is not an object on the provider",
			with(desiredBot(), "name", map[string]any{"givenName": "Payments"}), provided("name", "Payments Bot"),
			[]PatchOp{replaceOp("name.givenName", "Payments")}},

		{"extension sub-attribute: a path under the schema URN",
			with(desiredBot(), SchemaEnterpriseUser, map[string]any{"employeeNumber": "42", "department": "Payments"}),
			provided(SchemaEnterpriseUser, map[string]any{"employeeNumber": "41", "department": "Payments", "costCenter": "7"}),
			[]PatchOp{replaceOp(ent("employeeNumber"), "42")}},
		{"extension missing on the provider",
			with(desiredBot(), SchemaEnterpriseUser, map[string]any{"employeeNumber": "42", "department": "Payments"}), provided(),
			[]PatchOp{replaceOp(ent("department"), "Payments"), replaceOp(ent("employeeNumber"), "42")}},
		{"extension URN in another case on the provider",
			with(desiredBot(), SchemaEnterpriseUser, map[string]any{"employeeNumber": "42"}),
			provided(strings.ToLower(SchemaEnterpriseUser), map[string]any{"EmployeeNumber": "42"}), nil},
		{"extension complex sub-attribute the provider extended (manager.displayName is read-only)",
			with(desiredBot(), SchemaEnterpriseUser, map[string]any{"manager": map[string]any{"value": "26118915"}}),
			provided(SchemaEnterpriseUser, map[string]any{"manager": map[string]any{"value": "26118915", "displayName": "Jane", "$ref": "../Users/26118915"}}),
			nil},
		{"extension complex sub-attribute changed: replaced whole",
			with(desiredBot(), SchemaEnterpriseUser, map[string]any{"manager": map[string]any{"value": "26118915"}}),
			provided(SchemaEnterpriseUser, map[string]any{"manager": map[string]any{"value": "1", "displayName": "Joe"}}),
			[]PatchOp{replaceOp(ent("manager"), map[string]any{"value": "26118915"})}},

		{"numbers: int against float64", with(desiredBot(), bots, map[string]any{"quota": 7}),
			provided(bots, map[string]any{"quota": 7.0}), nil},
		{"numbers: float64 against json.Number", with(desiredBot(), bots, map[string]any{"quota": 7.0}),
			provided(bots, map[string]any{"quota": json.Number("7")}), nil},
		{"numbers: json.Number 7.0 against int", with(desiredBot(), bots, map[string]any{"quota": json.Number("7.0")}),
			provided(bots, map[string]any{"quota": 7}), nil},
		{"numbers that differ", with(desiredBot(), bots, map[string]any{"quota": 7}),
			provided(bots, map[string]any{"quota": 7.5}), []PatchOp{replaceOp(bots+":quota", 7)}},
		{"number against numeric string", with(desiredBot(), bots, map[string]any{"quota": 7}),
			provided(bots, map[string]any{"quota": "7"}), []PatchOp{replaceOp(bots+":quota", 7)}},
		{"numbers inside a multi-valued attribute", with(desiredBot(), bots, map[string]any{"ports": []int{80, 443}}),
			provided(bots, map[string]any{"ports": []any{443.0, json.Number("80")}}), nil},

		{"multi-valued: the same values in another order",
			with(desiredBot(), "emails", []any{email("a@example.com", "work"), email("b@example.com", "home")}),
			provided("emails", []any{email("b@example.com", "home"), email("a@example.com", "work")}), nil},
		{"multi-valued: values the provider extended (primary, display) and spelled in another case",
			with(desiredBot(), "emails", []any{email("a@example.com", "work")}),
			provided("Emails", []any{map[string]any{"Value": "a@example.com", "TYPE": "work", "primary": false, "display": "A"}}), nil},
		{"multi-valued: one more value on the provider: replaced whole",
			with(desiredBot(), "emails", []any{email("a@example.com", "work")}),
			provided("emails", []any{email("a@example.com", "work"), email("x@example.com", "work")}),
			[]PatchOp{replaceOp("emails", []any{email("a@example.com", "work")})}},
		{"multi-valued: one value differs in a sub-attribute",
			with(desiredBot(), "emails", []any{email("a@example.com", "work"), email("b@example.com", "home")}),
			provided("emails", []any{email("a@example.com", "work"), email("b@example.com", "other")}),
			[]PatchOp{replaceOp("emails", []any{email("a@example.com", "work"), email("b@example.com", "home")})}},
		{"multi-valued: a sub-attribute asked for and missing",
			with(desiredBot(), "emails", []any{email("a@example.com", "work", "primary", true)}),
			provided("emails", []any{email("a@example.com", "work")}),
			[]PatchOp{replaceOp("emails", []any{email("a@example.com", "work", "primary", true)})}},
		{"multi-valued: each value held by a distinct one (no greedy pairing)",
			with(desiredBot(), "emails", []any{map[string]any{"value": "a@example.com"}, email("a@example.com", "work")}),
			provided("emails", []any{email("a@example.com", "work"), email("a@example.com", "home")}), nil},
		{"multi-valued: two values asked for, one value twice on the provider",
			with(desiredBot(), "emails", []any{email("a@example.com", "work"), email("b@example.com", "work")}),
			provided("emails", []any{email("a@example.com", "work"), email("a@example.com", "work")}),
			[]PatchOp{replaceOp("emails", []any{email("a@example.com", "work"), email("b@example.com", "work")})}},
		{"multi-valued: a single object on the provider",
			with(desiredBot(), "emails", []any{email("a@example.com", "work")}), provided("emails", email("a@example.com", "work")),
			[]PatchOp{replaceOp("emails", []any{email("a@example.com", "work")})}},

		{"schemas are not compared", with(desiredBot(), "schemas", []any{SchemaUser, SchemaEnterpriseUser}),
			provided("schemas", []any{"urn:example:other"}), nil},
		{"schemas missing on the provider", desiredBot(), provided("schemas", absent), nil},

		{"null asked for, absent on the provider", with(desiredBot(), "nickName", nil), provided(), nil},
		{"null asked for, set on the provider: removed", Resource{"nickName": nil},
			provided("nickName", "botty"), []PatchOp{{Op: "remove", Path: "nickName"}}},
		{"empty multi-valued asked for, values on the provider: removed", Resource{"emails": []any{}},
			provided("emails", []any{email("a@example.com", "work")}), []PatchOp{{Op: "remove", Path: "emails"}}},
		{"empty multi-valued asked for, empty on the provider", Resource{"emails": []any{}},
			provided("emails", []any{}), nil},
		{"null sub-attribute asked for, set on the provider: removed",
			Resource{"name": map[string]any{"middleName": nil, "givenName": "Payments"}},
			provided("name", map[string]any{"middleName": "M", "givenName": "Payments"}),
			[]PatchOp{{Op: "remove", Path: "name.middleName"}}},

		{"password is never returned, so it is always sent", with(desiredBot(), "password", "s3cret"), provided(),
			[]PatchOp{replaceOp("password", "s3cret")}},

		{"several differences: by attribute name, then sub-attribute name",
			with(desiredBot(), "displayName", "Bot", "title", "Robot", "active", false,
				"name", map[string]any{"givenName": "P", "familyName": "B"},
				SchemaEnterpriseUser, map[string]any{"organization": "O", "department": "D"}),
			Resource{"id": "1", "userName": "bot.payments", "externalId": "cluster-1/payments/bot", "userType": "ServiceAccount"},
			[]PatchOp{replaceOp("active", false), replaceOp("displayName", "Bot"),
				replaceOp("name.familyName", "B"), replaceOp("name.givenName", "P"),
				replaceOp("title", "Robot"), replaceOp(ent("department"), "D"), replaceOp(ent("organization"), "O")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff(tc.desired, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Diff:\n got %s\nwant %s", show(got), show(tc.want))
			}
			// Maps iterate in a random order: the operations must not.
			for range 20 {
				if again := Diff(tc.desired, tc.current); !reflect.DeepEqual(again, got) {
					t.Fatalf("Diff is not deterministic:\n %s\n %s", show(got), show(again))
				}
			}
		})
	}
}

// TestDiffThenMerge checks the two halves agree: once MergeForReplace has applied desired
// (what the provider holds after the PATCH), Diff has nothing left to send.
func TestDiffThenMerge(t *testing.T) {
	desired := with(desiredBot(), "displayName", "Bot", "nickName", nil, "emails", []any{map[string]any{"value": "a@example.com"}},
		"name", map[string]any{"givenName": "P"}, SchemaEnterpriseUser, map[string]any{"department": "D"})
	for _, current := range []Resource{nil, provided(), provided("DisplayName", "Old", "Name", map[string]any{"GivenName": "Q", "familyName": "F"},
		strings.ToLower(SchemaEnterpriseUser), map[string]any{"Department": "X", "costCenter": "7"}, "active", "false")} {
		if ops := Diff(desired, MergeForReplace(desired, current)); ops != nil {
			t.Errorf("after the merge of %s, Diff still sends %s", show(current), show(ops))
		}
	}
}

func TestReplaceBody(t *testing.T) {
	userSchemas := []any{SchemaUser}
	for _, tc := range []struct {
		name             string
		desired, current Resource
		want             Resource
	}{
		{"keeps what others set, applies desired, drops meta, groups and unknown attributes",
			Resource{"displayName": "Bot", SchemaEnterpriseUser: map[string]any{"department": "new"}},
			Resource{"id": "1", "userName": "bot", "title": "kept", "meta": map[string]any{"version": "1"},
				"internal": "secret", "urn:example:internal": map[string]any{"token": "x"}, "groups": []any{"g"},
				SchemaEnterpriseUser: map[string]any{"department": "old", "costCenter": "7"}},
			Resource{"id": "1", "userName": "bot", "title": "kept", "displayName": "Bot",
				SchemaEnterpriseUser: map[string]any{"department": "new", "costCenter": "7"},
				"schemas":            []any{SchemaUser, SchemaEnterpriseUser}}},
		{"an Agent's PUT keeps the owners and description others set, and never its read-only groups",
			Resource{"active": false, "schemas": []any{SchemaAgent}},
			Resource{"id": "1", "agentUserName": "bot", "displayName": "Bot", "description": "kept", "owners": []any{map[string]any{"value": "u1"}},
				"groups": []any{map[string]any{"value": "g"}}, "title": "a User's, not an Agent's"},
			Resource{"id": "1", "agentUserName": "bot", "displayName": "Bot", "description": "kept", "owners": []any{map[string]any{"value": "u1"}},
				"active": false, "schemas": []any{SchemaAgent}}},
		{"never echoes a password (or Password) a provider returned",
			Resource{"active": false},
			Resource{"id": "1", "userName": "bot", "password": "leaked", "Password": "leaked2", "active": true},
			Resource{"id": "1", "userName": "bot", "active": false, "schemas": userSchemas}},
		{"sends the password desired sets, and only that one",
			Resource{"password": "s3cret"},
			Resource{"id": "1", "userName": "bot", "PASSWORD": "leaked"},
			Resource{"id": "1", "userName": "bot", "password": "s3cret", "schemas": userSchemas}},
		{"sends an attribute desired sets outside the core User schema",
			Resource{"costCenter": "7"}, Resource{"id": "1", "costCenter": "6", "division": "x"},
			Resource{"id": "1", "costCenter": "7", "schemas": userSchemas}},
		{"an attribute current spells in another case is sent once, as desired spells it",
			Resource{"displayName": "New", "name": map[string]any{"givenName": "P"}},
			Resource{"id": "1", "DisplayName": "Old", "NAME": map[string]any{"GivenName": "Q", "familyName": "F"}},
			Resource{"id": "1", "displayName": "New", "name": map[string]any{"givenName": "P", "familyName": "F"}, "schemas": userSchemas}},
		{"an extension sub-attribute current spells in another case",
			Resource{SchemaEnterpriseUser: map[string]any{"department": "new"}},
			Resource{"id": "1", strings.ToLower(SchemaEnterpriseUser): map[string]any{"Department": "old", "costCenter": "7"}},
			Resource{"id": "1", SchemaEnterpriseUser: map[string]any{"department": "new", "costCenter": "7"},
				"schemas": []any{SchemaUser, SchemaEnterpriseUser}}},
		{"schemas: core first, then the extensions carried, sorted; current's list is not echoed",
			Resource{"schemas": []any{SchemaUser, bots}, bots: map[string]any{"quota": 7}},
			Resource{"id": "1", "schemas": []any{"urn:example:hostile", SchemaUser}, SchemaEnterpriseUser: map[string]any{"department": "D"}},
			Resource{"id": "1", bots: map[string]any{"quota": 7}, SchemaEnterpriseUser: map[string]any{"department": "D"},
				"schemas": []any{SchemaUser, bots, SchemaEnterpriseUser}}},
		{"an extension that is not an object is dropped",
			Resource{"active": false},
			Resource{"id": "1", SchemaEnterpriseUser: "not an object"},
			Resource{"id": "1", "active": false, "schemas": userSchemas}},
		{"a deactivation keeps the account's User attributes",
			Resource{"active": false},
			provided("emails", []any{map[string]any{"value": "a@example.com"}}),
			Resource{"id": "2819c223", "externalId": "cluster-1/payments/bot", "userName": "bot.payments", "userType": "ServiceAccount",
				"title": "set by the IdP admin", "active": false, "emails": []any{map[string]any{"value": "a@example.com"}}, "schemas": userSchemas}},
		{"null desired is sent as null (unassigned)",
			Resource{"nickName": nil}, Resource{"id": "1", "nickName": "botty"},
			Resource{"id": "1", "nickName": nil, "schemas": userSchemas}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := show(tc.current)
			got := ReplaceBody(tc.desired, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ReplaceBody:\n got %s\nwant %s", show(got), show(tc.want))
			}
			if show(tc.current) != before {
				t.Errorf("ReplaceBody modified current: %s", show(tc.current))
			}
		})
	}
}

func TestMergeForReplace(t *testing.T) {
	for _, tc := range []struct {
		name             string
		desired, current Resource
		want             Resource
	}{
		{"meta goes (its version is stale), everything else stays",
			Resource{"displayName": "Bot"},
			Resource{"id": "1", "Meta": map[string]any{"version": "1"}, "internal": "x", "groups": []any{"g"}},
			Resource{"id": "1", "internal": "x", "groups": []any{"g"}, "displayName": "Bot"}},
		{"complex attributes merge sub-attribute by sub-attribute, desired's spelling wins",
			Resource{"name": map[string]any{"givenName": "P"}, SchemaEnterpriseUser: map[string]any{"department": "D"}},
			Resource{"Name": map[string]any{"GivenName": "Q", "familyName": "F"}, SchemaEnterpriseUser: map[string]any{"costCenter": "7"}},
			Resource{"name": map[string]any{"givenName": "P", "familyName": "F"}, SchemaEnterpriseUser: map[string]any{"department": "D", "costCenter": "7"}}},
		{"multi-valued attributes are replaced whole",
			Resource{"emails": []any{"a"}}, Resource{"emails": []any{"b", "c"}},
			Resource{"emails": []any{"a"}}},
		{"no current", Resource{"active": false}, nil, Resource{"active": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := show(tc.current)
			got := MergeForReplace(tc.desired, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("MergeForReplace:\n got %s\nwant %s", show(got), show(tc.want))
			}
			if show(tc.current) != before {
				t.Errorf("MergeForReplace modified current: %s", show(tc.current))
			}
		})
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func TestOwnersComparedByValue(t *testing.T) {
	desired := Resource{"owners": []any{map[string]any{"value": "u1", "$ref": "https://a.example/scim/v2/Users/u1"}}}
	for name, tc := range map[string]struct {
		current Resource
		differs bool
	}{
		"the provider rewrote $ref and added display": {Resource{"owners": []any{map[string]any{"value": "u1", "$ref": "/Users/u1", "display": "Alice"}}}, false},
		"the provider left $ref out":                  {Resource{"owners": []any{map[string]any{"value": "u1"}}}, false},
		"another owner":                               {Resource{"owners": []any{map[string]any{"value": "u2"}}}, true},
		"one more owner":                              {Resource{"owners": []any{map[string]any{"value": "u1"}, map[string]any{"value": "u2"}}}, true},
		"no owners":                                   {Resource{}, true},
		"owners that are not references":              {Resource{"owners": "u1"}, true},
	} {
		if got := len(Diff(desired, tc.current)) > 0; got != tc.differs {
			t.Errorf("%s: differs %v, want %v", name, got, tc.differs)
		}
	}
	if ops := Diff(Resource{"owners": nil}, Resource{"owners": []any{map[string]any{"value": "u1"}}}); len(ops) != 1 || ops[0].Op != "remove" {
		t.Errorf("owners removed: %v", ops)
	}
}
