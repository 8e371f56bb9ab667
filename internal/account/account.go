// Package account is the only code that writes to a provider: it provisions an identity's
// account and its groups (Sync), takes accounts away (the Deprovisioner, one path for every
// cause), and decides the deletion policy that applies (EffectivePolicy).
package account

import (
	"encoding/json"
	"fmt"
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
	"agentUserName", "owners", // an Agent's name and owners (draft-wzdk-scim-agent-resource)
}

func isReserved(name string) bool {
	return slices.ContainsFunc(reservedAttributes, func(r string) bool { return strings.EqualFold(r, name) })
}

// coreSchemaPrefix starts every core schema URN (User, Group, Agent, a provider's own core type).
const coreSchemaPrefix = "urn:ietf:params:scim:schemas:core:"

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

// DesiredUser is the SCIM User the spec asks for: only the attributes the spec owns.
func DesiredUser(si *scimv1.ServiceIdentity, externalID string) (scim.Resource, error) {
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
			if scim.IsSchemaURN(k) {
				schemas = append(schemas, k)
			}
			u[k] = extra[k]
		}
	}
	u["schemas"] = schemas
	return u, nil
}

// checkAttribute refuses a spec.attributes entry that is reserved, is not an attribute name
// or schema URN, names the core User schema (whose sub-attributes would reach reserved ones
// such as active), or is an extension that is not an object of plain attribute names.
func checkAttribute(k string, v any) error {
	switch {
	case isReserved(k):
		return fmt.Errorf("spec.attributes may not set %q; use the dedicated spec field", k)
	case scim.IsSchemaURN(k):
		if !schemaURN.MatchString(k) {
			return fmt.Errorf("spec.attributes: %q is not a schema URN", k)
		}
		if strings.HasPrefix(strings.ToLower(k), coreSchemaPrefix) {
			// A core schema's URN path is its core attributes (RFC 7644 §3.10): under the User's
			// or an Agent's URN, reserved ones (active, externalId, owners, the name) would pass.
			return fmt.Errorf("spec.attributes may not use a core schema URN (%q); set its attributes by name", k)
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
