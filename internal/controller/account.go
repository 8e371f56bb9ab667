package controller

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

// reservedAttributes are set by the operator (or by the provider) and never through
// spec.attributes; compared case-insensitively, as SCIM attribute names are.
var reservedAttributes = []string{
	"schemas", "id", "meta", "externalId", "userName", "active", "displayName", "userType", "groups",
}

func isReserved(name string) bool {
	return slices.ContainsFunc(reservedAttributes, func(r string) bool { return strings.EqualFold(r, name) })
}

// attrName is an attribute name as RFC 7643 §2.1 defines it (ATTRNAME); extension schema
// URNs are checked by schemaURN. Anything else (a PATCH path, a filter, a dot) is refused,
// so spec.attributes cannot smuggle a path such as `emails[type eq "work"]` or `name.x`.
var (
	attrName  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)
	schemaURN = regexp.MustCompile(`^urn:[A-Za-z0-9][A-Za-z0-9.:_-]{0,250}$`)
)

// ExternalID is the deterministic externalId of an identity: <cluster-id>/<namespace>/<name>.
func ExternalID(clusterID string, si *scimv1.ServiceIdentity) string {
	return clusterID + "/" + si.Namespace + "/" + si.Name
}

// desiredUser is the SCIM User the spec asks for: only the attributes the spec owns.
func desiredUser(si *scimv1.ServiceIdentity, externalID string) (scim.Resource, error) {
	u := scim.Resource{
		"externalId": externalID,
		"userName":   si.EffectiveUserName(),
		"active":     !si.Spec.Suspend,
	}
	if si.Spec.DisplayName != "" {
		u["displayName"] = si.Spec.DisplayName
	}
	if si.Spec.UserType != "" {
		u["userType"] = si.Spec.UserType
	}
	schemas := []any{scim.SchemaUser}
	if si.Spec.Attributes != nil && len(si.Spec.Attributes.Raw) > 0 {
		var extra map[string]any
		if err := json.Unmarshal(si.Spec.Attributes.Raw, &extra); err != nil {
			return nil, fmt.Errorf("spec.attributes is not a JSON object: %w", err)
		}
		keys := make([]string, 0, len(extra))
		for k := range extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := checkAttribute(k, extra[k]); err != nil {
				return nil, err
			}
			if isSchemaURN(k) {
				schemas = append(schemas, k)
			}
			u[k] = extra[k]
		}
	}
	u["schemas"] = schemas
	return u, nil
}

func isSchemaURN(k string) bool { return strings.HasPrefix(strings.ToLower(k), "urn:") }

// checkAttribute refuses a spec.attributes entry that is reserved, is not an attribute name
// or schema URN, names the core User schema (whose sub-attributes would reach reserved ones
// such as active), or is an extension that is not an object of plain attribute names.
func checkAttribute(k string, v any) error {
	switch {
	case isReserved(k):
		return fmt.Errorf("spec.attributes may not set %q; use the dedicated spec field", k)
	case isSchemaURN(k):
		if !schemaURN.MatchString(k) {
			return fmt.Errorf("spec.attributes: %q is not a schema URN", k)
		}
		if strings.HasPrefix(strings.ToLower(k), strings.ToLower(scim.SchemaUser)) {
			return fmt.Errorf("spec.attributes may not use the core User schema URN (%q); set its attributes by name", k)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("spec.attributes[%q] must be an object", k)
		}
		for sk := range obj {
			if !attrName.MatchString(sk) {
				return fmt.Errorf("spec.attributes[%q]: %q is not an attribute name", k, sk)
			}
		}
	case !attrName.MatchString(k):
		return fmt.Errorf("spec.attributes: %q is not an attribute name (letters, digits, '-' and '_', starting with a letter)", k)
	default:
		// A complex attribute's sub-attributes become PATCH paths ("name.givenName") too.
		if obj, ok := v.(map[string]any); ok {
			for sk := range obj {
				if !attrName.MatchString(sk) {
					return fmt.Errorf("spec.attributes[%q]: %q is not an attribute name", k, sk)
				}
			}
		}
	}
	return nil
}

// diffUser returns PATCH operations that make current match desired in the attributes desired
// sets. Extension objects and complex attributes are compared sub-attribute by sub-attribute,
// so attributes set on the target by others are left alone.
func diffUser(desired, current scim.Resource) []scim.PatchOp {
	keys := make([]string, 0, len(desired))
	for k := range desired {
		if k != "schemas" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var ops []scim.PatchOp
	for _, k := range keys {
		want := desired[k]
		have, present := lookupFold(current, k)
		wantObj, isObj := want.(map[string]any)
		if isObj {
			haveObj, _ := have.(map[string]any)
			subs := make([]string, 0, len(wantObj))
			for sk := range wantObj {
				subs = append(subs, sk)
			}
			sort.Strings(subs)
			for _, sk := range subs {
				hv, ok := lookupFold(haveObj, sk)
				if ok && jsonEqual(wantObj[sk], hv) {
					continue
				}
				sep := "."
				if isSchemaURN(k) {
					sep = ":"
				}
				ops = append(ops, scim.PatchOp{Op: "replace", Path: k + sep + sk, Value: wantObj[sk]})
			}
			continue
		}
		if present && valueEqual(k, want, have) {
			continue
		}
		ops = append(ops, scim.PatchOp{Op: "replace", Path: k, Value: want})
	}
	return ops
}

// lookupFold finds an attribute; SCIM attribute names are case-insensitive.
func lookupFold(m map[string]any, key string) (any, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

func valueEqual(key string, want, have any) bool {
	if key == "userName" {
		ws, _ := want.(string)
		hs, _ := have.(string)
		return strings.EqualFold(ws, hs)
	}
	if key == "active" {
		if hs, ok := have.(string); ok { // some providers send "true"
			have = strings.EqualFold(hs, "true")
		}
	}
	return jsonEqual(want, have)
}

func jsonEqual(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// userAttributes are the attributes of the core User schema (RFC 7643 §4.1) a PUT may carry:
// password is never returned and groups is read-only, so neither is sent back.
var userAttributes = []string{
	"id", "externalId", "userName", "name", "displayName", "nickName", "profileUrl", "title", "userType",
	"preferredLanguage", "locale", "timezone", "active", "emails", "phoneNumbers", "ims", "photos",
	"addresses", "entitlements", "roles", "x509Certificates",
}

// replaceBody is the body of a PUT that applies desired to current and keeps what others set:
// only User attributes, the extensions the spec sets and the enterprise extension, never
// anything else the provider returned (a hostile provider's body is not echoed back).
func replaceBody(desired, current scim.Resource) scim.Resource {
	merged := mergeForReplace(desired, current)
	out := scim.Resource{}
	var schemas []any
	for k, v := range merged {
		switch {
		case slices.ContainsFunc(userAttributes, func(a string) bool { return strings.EqualFold(a, k) }):
			out[k] = v
		case isSchemaURN(k) && (strings.EqualFold(k, scim.SchemaEnterpriseUser) || desired[k] != nil):
			if _, ok := v.(map[string]any); ok {
				out[k] = v
				schemas = append(schemas, k)
			}
		}
	}
	sort.Slice(schemas, func(i, j int) bool { return schemas[i].(string) < schemas[j].(string) })
	out["schemas"] = append([]any{scim.SchemaUser}, schemas...)
	return out
}

// mergeForReplace applies desired onto current for a PUT that keeps what others set.
func mergeForReplace(desired, current scim.Resource) scim.Resource {
	out := scim.Resource{}
	for k, v := range current {
		if k == "meta" {
			continue
		}
		out[k] = v
	}
	for k, v := range desired {
		if obj, ok := v.(map[string]any); ok {
			merged := map[string]any{}
			if cur, ok := out[k].(map[string]any); ok {
				for ck, cv := range cur {
					merged[ck] = cv
				}
			}
			for sk, sv := range obj {
				merged[sk] = sv
			}
			out[k] = merged
			continue
		}
		out[k] = v
	}
	return out
}
