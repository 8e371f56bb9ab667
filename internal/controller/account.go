package controller

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

// Attributes the operator always sets; spec.attributes cannot override them.
var reservedAttributes = map[string]bool{
	"schemas": true, "id": true, "meta": true, "externalId": true, "userName": true,
	"active": true, "displayName": true, "userType": true, "groups": true,
}

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
			if reservedAttributes[k] {
				return nil, fmt.Errorf("spec.attributes may not set %q; use the dedicated spec field", k)
			}
			if isSchemaURN(k) {
				if _, ok := extra[k].(map[string]any); !ok {
					return nil, fmt.Errorf("spec.attributes[%q] must be an object", k)
				}
				schemas = append(schemas, k)
			}
			u[k] = extra[k]
		}
	}
	u["schemas"] = schemas
	return u, nil
}

func isSchemaURN(k string) bool { return strings.HasPrefix(k, "urn:") }

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
