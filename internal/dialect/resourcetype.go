// Package dialect is what the operator knows of how a provider speaks SCIM: the resource type its
// accounts are (Users, or an Agent type), and the adaptations observed at run time (a PATCH refused,
// filters matched case-insensitively, ...), shown on the target's status.
package dialect

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// The resource types identities can be provisioned as. User is RFC 7643's; Agent is the IETF
// SCIM agent drafts' (an Agent is named by "agentUserName" in draft-wzdk-scim-agent-resource-00,
// by "name" in the earlier draft-abbey-scim-agent-extension-00, which share the schema URN and
// the endpoint: the provider's /Schemas tells which); any other name is a provider's own
// resource type found in /ResourceTypes, given the User attributes.
// UsersEndpoint is the SCIM User resource endpoint (RFC 7644 §3.2).
const UsersEndpoint = "Users"

const (
	resourceTypeUser  = "User"
	resourceTypeAgent = "Agent"
	// SchemaAgent is the core schema of the IETF SCIM agent drafts' Agent resource.
	SchemaAgent = scim.SchemaAgent
	// defaultUserType is spec.userType's schema default.
	defaultUserType = "ServiceAccount"
)

// AccountType is how a target's accounts are addressed and named.
type AccountType struct {
	// endpoint is the resource type's endpoint, without the leading slash ("Users").
	Endpoint string
	// schema is its core schema URN.
	Schema string
	// nameAttr is the attribute that holds the identity's userName: userName, or agentUserName
	// or name for Agents.
	NameAttr string
	// userType, when set, is sent as userType when the spec sets none (Agent as a User).
	userType string
}

var UserType = AccountType{Endpoint: UsersEndpoint, Schema: scim.SchemaUser, NameAttr: "userName"}

// TypeOf is the account kind recorded on the target's status by discovery; nil status (a
// target probed before resource types existed) means User.
func TypeOf(t *targets.Target) AccountType {
	rt := t.Status.ResourceType
	if rt == nil || rt.Name == resourceTypeUser {
		return UserType
	}
	if rt.Schema == scim.SchemaUser { // Agent asked, the provider has no Agents: a User with userType Agent
		k := UserType
		k.userType = resourceTypeAgent
		return k
	}
	k := AccountType{Endpoint: strings.TrimPrefix(rt.Endpoint, "/"), Schema: rt.Schema, NameAttr: "userName"}
	switch {
	case rt.NameAttribute != "":
		k.NameAttr = rt.NameAttribute
	case rt.Schema == SchemaAgent:
		k.NameAttr = AgentNameAbbey
	}
	return k
}

// The attributes that name an Agent in the two drafts.
const (
	AgentNameWZDK  = "agentUserName" // draft-wzdk-scim-agent-resource-00
	AgentNameAbbey = "name"          // draft-abbey-scim-agent-extension-00
)

// IsWZDK reports whether accounts of k are draft-wzdk-scim-agent-resource Agents: they require
// displayName and active, and may carry owners.
func (k AccountType) IsWZDK() bool { return k.Schema == SchemaAgent && k.NameAttr == AgentNameWZDK }

// agentNameAttribute reads the Agent schema from the provider's /Schemas: agentUserName
// (draft-wzdk) or name (draft-abbey). A provider that serves no /Schemas (or no Agent schema in
// it) gets name, as before the wzdk draft, and the message says so; a transient failure is an
// error, since the choice is recorded for good.
func agentNameAttribute(ctx context.Context, c *scim.Client) (string, string, error) {
	schemas, err := c.Schemas(ctx)
	if err != nil {
		// Only a provider that does not serve /Schemas at all (404, 405, 501) decides it; any other
		// failure is asked again, since the choice is kept for good.
		if !scim.IsNotFound(err) && !scim.IsNotImplemented(err) {
			return "", "", fmt.Errorf("reading /Schemas to learn how an Agent is named: %w", err)
		}
		return AgentNameAbbey, fmt.Sprintf("/Schemas is not served (%v): Agents are named by name (draft-abbey)", err), nil
	}
	for _, sc := range schemas {
		if sc.Str("id") != SchemaAgent {
			continue
		}
		attrs, _ := sc["attributes"].([]any)
		var hasName bool
		for _, a := range attrs {
			m, _ := a.(map[string]any)
			switch n, _ := m["name"].(string); {
			case strings.EqualFold(n, AgentNameWZDK):
				return AgentNameWZDK, "named by agentUserName (draft-wzdk-scim-agent-resource)", nil
			case strings.EqualFold(n, AgentNameAbbey):
				hasName = true
			}
		}
		if hasName {
			return AgentNameAbbey, "named by name (draft-abbey-scim-agent-extension)", nil
		}
	}
	return AgentNameAbbey, "its schema is not in /Schemas: Agents are named by name (draft-abbey)", nil
}

// TypeReady reports why a target's accounts cannot be provisioned yet: its spec names a resource
// type that discovery has not resolved.
func TypeReady(t *targets.Target) error {
	want := t.Spec.ResourceType
	if want == "" || want == resourceTypeUser {
		return nil
	}
	if rt := t.Status.ResourceType; rt == nil || (rt.Name != want && (want != resourceTypeAgent || rt.Schema != scim.SchemaUser)) {
		return fmt.Errorf("target %s: resource type %s is not discovered yet", t.Key(), want)
	}
	return nil
}

// ResolvedFor reports whether a recorded resource type answers spec.resourceType want. Once
// recorded it is kept: accounts were made as that type, and a provider that starts (or stops)
// advertising Agents later must not leave them behind.
func ResolvedFor(rt *scimv1.ResourceTypeStatus, want string) bool {
	if want == "" {
		want = resourceTypeUser
	}
	return rt != nil && strings.EqualFold(rt.Name, want)
}

// ResolveResourceType decides what the target's accounts are made as, from spec.resourceType
// and the provider's /ResourceTypes.
func ResolveResourceType(ctx context.Context, c *scim.Client, want string) (*scimv1.ResourceTypeStatus, error) {
	user := &scimv1.ResourceTypeStatus{Name: resourceTypeUser, Endpoint: "/Users", Schema: scim.SchemaUser}
	if want == "" || want == resourceTypeUser {
		return user, nil
	}
	types, err := c.ResourceTypes(ctx)
	if err != nil && (want != resourceTypeAgent || scim.IsRetryable(err) || scim.IsUnauthorized(err)) {
		// Only a provider that does not serve /ResourceTypes at all makes Agents Users: a
		// transient failure must not decide the type for good.
		return nil, fmt.Errorf("reading /ResourceTypes to find resource type %s: %w", want, err)
	}
	for _, rt := range types {
		name, schema, endpoint := rt.Str("name"), rt.Str("schema"), rt.Str("endpoint")
		match := strings.EqualFold(name, want)
		if want == resourceTypeAgent {
			match = match || schema == SchemaAgent
		}
		if !match || !validEndpoint(endpoint) || schema == "" || len(schema) > 256 || !scim.IsSchemaURN(schema) {
			continue
		}
		rs := &scimv1.ResourceTypeStatus{Name: scim.Sanitize(name, 64), Endpoint: endpoint, Schema: schema,
			Message: fmt.Sprintf("The provider advertises resource type %s at %s", scim.Sanitize(name, 64), endpoint)}
		if schema == SchemaAgent {
			attr, how, err := agentNameAttribute(ctx, c)
			if err != nil {
				return nil, err
			}
			rs.NameAttribute = attr
			rs.Message = status.Truncate(rs.Message+"; its Agents are "+how, 512)
		}
		return rs, nil
	}
	if want != resourceTypeAgent {
		return nil, fmt.Errorf("%w: the provider's /ResourceTypes does not advertise resource type %s", errNotAdvertised, want)
	}
	user.Name = resourceTypeAgent
	user.Message = "The provider does not advertise an Agent resource type: identities are Users with userType Agent"
	if err != nil {
		user.Message = status.Truncate(fmt.Sprintf("The provider's /ResourceTypes could not be read (%v): identities are Users with userType Agent", err), 512)
	}
	return user, nil
}

var errNotAdvertised = fmt.Errorf("resource type not advertised")

// validEndpoint accepts a resource type endpoint the client can address: one path segment
// below the SCIM base, e.g. /Agents.
func validEndpoint(e string) bool {
	rest, ok := strings.CutPrefix(e, "/")
	if !ok || rest == "" || len(rest) > 64 {
		return false
	}
	return strings.IndexFunc(rest, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_'
	}) < 0
}

// AsType makes the desired User into the target's kind: an Agent is named by its name
// attribute (agentUserName or name) and has the Agent schema, and a draft-wzdk Agent without a
// displayName gets its name as one; a User standing in for an Agent says userType Agent (unless the spec sets
// one other than the default). u is not modified.
func AsType(u scim.Resource, k AccountType) scim.Resource {
	if k == UserType {
		return u
	}
	out := maps.Clone(u)
	if k.userType != "" {
		// The schema defaults userType to ServiceAccount: on a target that makes identities
		// Agents, that default gives way; any other value the spec sets stays.
		if cur, _ := out["userType"].(string); cur == "" || cur == defaultUserType {
			out["userType"] = k.userType
		}
	}
	if schemas, ok := out["schemas"].([]any); ok && len(schemas) > 0 {
		schemas = slices.Clone(schemas)
		schemas[0] = k.Schema
		out["schemas"] = schemas
	}
	for key := range out {
		// The kind's own schema URN as a key is its core attributes (RFC 7644 §3.10), which
		// spec.attributes may not set; DesiredUser refuses core URNs, this keeps it so.
		if strings.EqualFold(key, k.Schema) && k.Schema != "" {
			delete(out, key)
		}
	}
	if k.NameAttr != "userName" {
		for key := range out {
			if strings.EqualFold(key, k.NameAttr) {
				delete(out, key) // another spelling of the name attribute
			}
		}
		out[k.NameAttr] = out["userName"]
		delete(out, "userName")
		delete(out, "userType") // a User attribute; an Agent has its own
	}
	if k.IsWZDK() {
		// The draft requires displayName (and active, which the desired account always sets).
		if _, ok := out["displayName"]; !ok {
			out["displayName"] = out[k.NameAttr]
		}
	}
	return out
}

// AccountName is the name an account carries in the attribute of its kind.
func AccountName(u scim.Resource, k AccountType) string { return u.Str(k.NameAttr) }

// AccountOf is the account desired makes on target t of kind k: AsType, then the owner of a
// draft-wzdk Agent (WithOwners) unless the provider refused owners lately (o.OwnersRefused).
// Provisioning and the sweeps' comparison both use it.
func (o *Observed) AccountOf(desired scim.Resource, k AccountType, t *targets.Target, owner *scimv1.OwnerStatus) scim.Resource {
	u := AsType(desired, k)
	if o.OwnersRefused(t.Key()) {
		return u
	}
	return WithOwners(u, k, t, owner)
}

// WithOwners names the identity's owner in a draft-wzdk Agent's owners attribute: a reference
// to the owner's User on the same target, when governance found the owner active there (the
// target is also an owner directory; owner.accounts). Once that directory has said the owner is
// missing or inactive (or gave no id a reference can carry), owners is removed. Anywhere else an
// id would mean nothing to the provider, so u is returned unchanged (as it is for any other kind
// of account, and while the directory has not answered).
func WithOwners(u scim.Resource, k AccountType, t *targets.Target, owner *scimv1.OwnerStatus) scim.Resource {
	if !k.IsWZDK() || owner == nil || owner.State == scimv1.OwnerUnchecked {
		return u
	}
	out := maps.Clone(u)
	if i := slices.IndexFunc(owner.Accounts, func(a scimv1.OwnerAccount) bool { return a.Directory == t.Key() && a.ID != "" }); i >= 0 && owner.State == scimv1.OwnerActive {
		id := owner.Accounts[i].ID
		out["owners"] = []any{map[string]any{
			"value": id,
			"$ref":  strings.TrimSuffix(t.Spec.Endpoint, "/") + "/" + UsersEndpoint + "/" + url.PathEscape(id),
		}}
		return out
	}
	if !slices.Contains(strings.Split(owner.Directory, ", "), t.Key()) {
		return u // not an owner directory of this identity (or not named in the truncated list)
	}
	out["owners"] = nil // removed: the owner is not active here, or has no id a reference can carry
	return out
}
