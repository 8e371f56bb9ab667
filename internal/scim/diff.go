package scim

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
)

// This file holds the pure protocol logic of keeping a User in step: comparing the attributes
// a client owns with what the service provider returned, and building the PATCH (RFC 7644
// §3.5.2) or PUT (RFC 7644 §3.5.1) that corrects them. Nothing here sends a request.
//
// Attribute names are case-insensitive (RFC 7643 §2.1) everywhere: in the resource, in complex
// attributes' sub-attributes, and in the elements of multi-valued attributes.

// IsSchemaURN reports whether an attribute name is a schema URN, i.e. an extension's container
// such as SchemaEnterpriseUser (RFC 7643 §3.3), rather than an attribute.
func IsSchemaURN(name string) bool { return strings.HasPrefix(strings.ToLower(name), "urn:") }

// Diff returns the PATCH operations (RFC 7644 §3.5.2) that make current match desired in the
// attributes desired sets; nil when they already match. Attributes desired does not name are
// never touched, and "schemas" is not compared.
//
//   - A complex attribute or an extension (an object in desired) is compared sub-attribute by
//     sub-attribute, with one operation per sub-attribute that differs, so sub-attributes set on
//     the provider by others are left alone. The path is "name.givenName" for a complex
//     attribute and "<schema URN>:employeeNumber" for an extension (RFC 7644 §3.5.2, §3.10).
//   - Any other value is compared as a whole: a multi-valued attribute such as emails differs
//     when the provider holds more or fewer values, or a value not asked for; its values are
//     unordered, and a value the provider extended with sub-attributes of its own (a "display",
//     a default "primary") still matches. The operation replaces it whole.
//   - Numbers compare by value (7, 7.0 and json.Number("7") are equal), userName case-insensitively
//     (its caseExact is false, RFC 7643 §4.1.1), and active also when the provider sent "true".
//   - A null or empty desired value means unassigned (RFC 7643 §2.5): it matches an absent, null
//     or empty value and otherwise becomes a "remove" operation.
//   - Differing values become "replace" operations, which also add a missing attribute (RFC 7644
//     §3.5.2.3).
//
// Operations come in a stable order: by attribute name, then sub-attribute name.
//
// A write-only attribute (password: returned "never", RFC 7643 §4.1.1) can never be read back,
// so when desired sets one it always differs and is sent on every call.
func Diff(desired, current Resource) []PatchOp {
	var ops []PatchOp
	for _, c := range Changes(desired, current) {
		ops = append(ops, c.Op)
	}
	return ops
}

// Change is one attribute Diff would change: the operation, and the values it changes from and
// to (Present false: the provider does not hold the attribute).
type Change struct {
	Op      PatchOp
	Current any
	Present bool
	Desired any
}

// Changes is Diff with the values on both sides, for showing what would change (a plan).
func Changes(desired, current Resource) []Change {
	var out []Change
	add := func(name, path string, want, have any, present bool) {
		if op, differs := compare(name, path, want, have, present); differs {
			out = append(out, Change{Op: op, Current: have, Present: present, Desired: want})
		}
	}
	for _, k := range sortedKeys(desired) {
		if strings.EqualFold(k, "schemas") {
			continue
		}
		want := desired[k]
		have, present := lookupFold(current, k)
		wantObj, isObj := want.(map[string]any)
		if !isObj {
			add(k, k, want, have, present)
			continue
		}
		haveObj, _ := have.(map[string]any)
		sep := "."
		if IsSchemaURN(k) {
			sep = ":"
		}
		for _, sk := range sortedKeys(wantObj) {
			hv, ok := lookupFold(haveObj, sk)
			add(sk, k+sep+sk, wantObj[sk], hv, ok)
		}
	}
	return out
}

// compare returns the operation that sets path to want when have (present or not) does not
// already hold it. name is the attribute's own name, for the attributes compared specially.
func compare(name, path string, want, have any, present bool) (PatchOp, bool) {
	if unassigned(want) {
		if !present || unassigned(have) {
			return PatchOp{}, false
		}
		return PatchOp{Op: "remove", Path: path}, true
	}
	if present && valueEqual(name, want, have) {
		return PatchOp{}, false
	}
	return PatchOp{Op: "replace", Path: path, Value: want}, true
}

// unassigned is RFC 7643 §2.5: null and an empty multi-valued attribute are "no value".
func unassigned(v any) bool {
	if v == nil {
		return true
	}
	if a, ok := v.([]any); ok {
		return len(a) == 0
	}
	return false
}

// valueEqual compares one attribute's desired and current values.
func valueEqual(name string, want, have any) bool {
	switch {
	case strings.EqualFold(name, "userName"), strings.EqualFold(name, "agentUserName"): // caseExact false
		ws, wok := want.(string)
		hs, hok := have.(string)
		return wok && hok && strings.EqualFold(ws, hs)
	case strings.EqualFold(name, "active"):
		if b, ok := flexBoolOf(have); ok { // some providers send "true"
			have = b
		}
	case strings.EqualFold(name, "owners"):
		// An Agent's owners are compared by value: a provider may write $ref its own way (its
		// base URL, a relative one) or not at all, and add display.
		w, h := referencedValues(want), referencedValues(have)
		return w != nil && h != nil && slices.Equal(w, h)
	}
	return jsonEqual(want, have)
}

// referencedValues are the sorted values of a multi-valued reference attribute (owners), nil
// when v is not a list of objects with string values.
func referencedValues(v any) []string {
	n, ok := normalize(v)
	if !ok {
		return nil
	}
	list, ok := n.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		m, _ := e.(map[string]any)
		val, ok := lookupFold(m, "value")
		if !ok {
			return nil
		}
		str, ok := val.(string)
		if !ok {
			return nil
		}
		out = append(out, str)
	}
	sort.Strings(out)
	return out
}

// jsonEqual reports whether have holds want, compared as JSON values: numbers by value,
// objects on want's (case-insensitive) keys, arrays as unordered collections of the same size.
func jsonEqual(want, have any) bool {
	w, ok1 := normalize(want)
	h, ok2 := normalize(have)
	return ok1 && ok2 && holds(w, h)
}

// normalize turns a value into what encoding/json decodes (map[string]any, []any, float64,
// string, bool, nil), whatever Go types it was built from (int, json.Number, typed slices).
func normalize(v any) (any, bool) {
	switch v.(type) {
	case nil, string, bool, float64:
		return v, true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, false
	}
	return out, true
}

// holds compares normalized values (see jsonEqual).
func holds(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, present := lookupFold(h, k)
			if unassigned(wv) {
				if present && !unassigned(hv) {
					return false
				}
				continue
			}
			if !present || !holds(wv, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		return ok && len(h) == len(w) && matchAll(w, h)
	default:
		return want == have
	}
}

// matchAll reports whether every want[i] can be paired with a distinct have[j] that holds it
// (a perfect bipartite matching, found with augmenting paths: a greedy pairing could take the
// one have[j] a later, more specific want[i] needed). len(want) == len(have).
func matchAll(want, have []any) bool {
	pairedWith := make([]int, len(have)) // have index → want index, -1 when free
	for j := range pairedWith {
		pairedWith[j] = -1
	}
	var augment func(i int, seen []bool) bool
	augment = func(i int, seen []bool) bool {
		for j := range have {
			if seen[j] || !holds(want[i], have[j]) {
				continue
			}
			seen[j] = true
			if pairedWith[j] < 0 || augment(pairedWith[j], seen) {
				pairedWith[j] = i
				return true
			}
		}
		return false
	}
	for i := range want {
		if !augment(i, make([]bool, len(have))) {
			return false
		}
	}
	return true
}

// lookupFold finds an attribute by name, case-insensitively; an exact match wins.
func lookupFold(m map[string]any, key string) (any, bool) {
	if k, ok := keyFold(m, key); ok {
		return m[k], true
	}
	return nil, false
}

// keyFold returns the key of m that names the attribute key (an exact match first, then a
// case-insensitive one).
func keyFold(m map[string]any, key string) (string, bool) {
	if _, ok := m[key]; ok {
		return key, true
	}
	// The smallest matching key, so a resource with two spellings always resolves the same way.
	found, ok := "", false
	for k := range m {
		if strings.EqualFold(k, key) && (!ok || k < found) {
			found, ok = k, true
		}
	}
	return found, ok
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// userAttributes are the attributes of the core User schema (RFC 7643 §4.1) that a PUT may
// carry back from what the provider returned: not password (returned "never": a provider that
// sends one anyway does not get it echoed), groups (read-only) or meta (read-only).
var userAttributes = []string{
	"id", "externalId", "userName", "name", "displayName", "nickName", "profileUrl", "title", "userType",
	"preferredLanguage", "locale", "timezone", "active", "emails", "phoneNumbers", "ims", "photos",
	"addresses", "entitlements", "roles", "x509Certificates",
}

// agentAttributes are the writable attributes of the agent drafts' Agent (draft-wzdk-scim-agent-
// resource-00: agentUserName, displayName, active, description, owners; draft-abbey-scim-agent-
// extension-00 §5.1 the others), kept from current in the PUT of an Agent as userAttributes are
// in a User's. groups is read-only in both.
var agentAttributes = []string{
	"id", "externalId", "agentUserName", "name", "displayName", "active", "description", "owners",
	"agentType", "subject", "entitlements", "roles", "applications", "x509Certificates", "protocols", "parent",
}

// ReplaceBody is the body of a PUT (RFC 7644 §3.5.1) that applies desired to current and keeps
// what others set. A PUT replaces the whole resource, so it carries:
//   - every attribute desired sets (complex attributes and extensions merged into current's
//     sub-attributes, as MergeForReplace does), password included when desired sets one;
//   - from current, only the core attributes of its kind (userAttributes, or agentAttributes
//     for an Agent: never meta, password or groups), the enterprise extension, and the
//     extensions desired sets. Anything else the provider returned is not echoed back: a
//     hostile provider's body does not travel on;
//   - schemas: the core User schema, then the extensions the body carries, sorted.
//
// An attribute current spells in another case than desired is sent once, as desired spells it.
func ReplaceBody(desired, current Resource) Resource {
	merged := MergeForReplace(desired, current)
	out := Resource{}
	var schemas []string
	kept := userAttributes
	if coreSchema(desired) == SchemaAgent {
		kept = agentAttributes
	}
	for k, v := range merged {
		_, fromDesired := lookupFold(desired, k)
		switch {
		case strings.EqualFold(k, "schemas"):
		case IsSchemaURN(k):
			if _, ok := v.(map[string]any); ok && (fromDesired || strings.EqualFold(k, SchemaEnterpriseUser)) {
				out[k] = v
				schemas = append(schemas, k)
			}
		case fromDesired || slices.ContainsFunc(kept, func(a string) bool { return strings.EqualFold(a, k) }):
			out[k] = v
		}
	}
	sort.Strings(schemas)
	all := make([]any, 0, len(schemas)+1)
	all = append(all, coreSchema(desired))
	for _, s := range schemas {
		all = append(all, s)
	}
	out["schemas"] = all
	return out
}

// coreSchema is the core schema desired names first (an Agent's, say), else the User's.
func coreSchema(desired Resource) string {
	if schemas, ok := desired["schemas"].([]any); ok && len(schemas) > 0 {
		if s, ok := schemas[0].(string); ok && strings.HasPrefix(s, "urn:ietf:params:scim:schemas:core:") {
			return s
		}
	}
	return SchemaUser
}

// MergeForReplace applies desired onto current: what the resource holds after a PUT of
// ReplaceBody or a PATCH of Diff (RFC 7644 §3.5.1, §3.5.2), e.g. when the provider answered
// 204 No Content. meta is dropped (its version is stale once the resource changed). A complex
// attribute or extension desired sets is merged sub-attribute by sub-attribute; any other
// value replaces current's. Names match case-insensitively, and desired's spelling wins.
// Neither argument is modified.
func MergeForReplace(desired, current Resource) Resource {
	out := Resource{}
	for k, v := range current {
		if !strings.EqualFold(k, "meta") {
			out[k] = v
		}
	}
	for _, k := range sortedKeys(desired) {
		v := desired[k]
		cur, _ := lookupFold(out, k)
		deleteFold(out, k)
		if obj, ok := v.(map[string]any); ok {
			merged := map[string]any{}
			if curObj, ok := cur.(map[string]any); ok {
				for ck, cv := range curObj {
					merged[ck] = cv
				}
			}
			for _, sk := range sortedKeys(obj) {
				deleteFold(merged, sk)
				merged[sk] = obj[sk]
			}
			v = merged
		}
		out[k] = v
	}
	return out
}

// deleteFold removes every spelling of key from m.
func deleteFold(m map[string]any, key string) {
	for k := range m {
		if strings.EqualFold(k, key) {
			delete(m, k)
		}
	}
}
