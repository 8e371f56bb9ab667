package scimserver

import (
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// SchemaAgent is the Agent resource's core schema URN (draft-abbey-scim-agent-extension-00 §5.1.4).
const SchemaAgent = "urn:ietf:params:scim:schemas:core:2.0:Agent"

// AgentSchema is the Agent resource schema of the IETF individual draft
// draft-abbey-scim-agent-extension-00 ("SCIM Agents and Agentic Applications Extension",
// M. Abbey, R. S. Cohen, October 2025), §5.1: resource type "Agent" at endpoint /Agents with
// schema urn:ietf:params:scim:schemas:core:2.0:Agent. The draft marks only name REQUIRED and
// recommends eq filtering on name and externalId (§5.1.2); it does not state name's
// uniqueness, which this server enforces (case-insensitively, like a User's userName) so
// that a create with a taken name answers 409 uniqueness. externalId, id and meta are the
// common attributes of RFC 7643 §3.1. The AgenticApplication resource type (§5.2) is not
// served.
func AgentSchema() schema.Schema {
	str := func(name, desc string) schema.CoreAttribute {
		return schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
			Name: name, Description: optional.NewString(desc),
		}))
	}
	multi := func(name, desc string, subs ...string) schema.CoreAttribute {
		var sp []schema.SimpleParams
		for _, s := range subs {
			sp = append(sp, schema.SimpleStringParams(schema.StringParams{Name: s}))
		}
		return schema.ComplexCoreAttribute(schema.ComplexParams{
			Name: name, Description: optional.NewString(desc), MultiValued: true, SubAttributes: sp,
		})
	}
	return schema.Schema{
		ID:          SchemaAgent,
		Name:        optional.NewString("Agent"),
		Description: optional.NewString("Agent identities (draft-abbey-scim-agent-extension-00 §5.1)"),
		Attributes: []schema.CoreAttribute{
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
				Name:        "name",
				Description: optional.NewString("The name of the Agent. REQUIRED."),
				Required:    true,
				Uniqueness:  schema.AttributeUniquenessServer(),
			})),
			str("displayName", "The display name of the Agent."),
			schema.SimpleCoreAttribute(schema.SimpleBooleanParams(schema.BooleanParams{
				Name: "active", Description: optional.NewString("The agent's administrative status."),
			})),
			str("description", "The description of the Agent."),
			str("agentType", "The type of agent."),
			str("subject", "Correlates the agent with the sub claim of an inbound token."),
			multi("entitlements", "Entitlements the agent has.", "value", "display", "type"),
			multi("roles", "Roles the agent assumes.", "value", "display", "type"),
			schema.ComplexCoreAttribute(schema.ComplexParams{
				Name: "groups", Description: optional.NewString("Group membership (read-only)."), MultiValued: true,
				Mutability: schema.AttributeMutabilityReadOnly(),
				SubAttributes: []schema.SimpleParams{
					schema.SimpleStringParams(schema.StringParams{Name: "value"}),
					schema.SimpleStringParams(schema.StringParams{Name: "$ref"}),
					schema.SimpleStringParams(schema.StringParams{Name: "display"}),
				},
			}),
			multi("applications", "Applications this agent shares a trust boundary with.", "value", "$ref", "display", "type"),
			multi("x509Certificates", "Certificates associated with the agent.", "value"),
			multi("protocols", "Communication protocols the agent supports.", "type", "specificationUrl"),
			schema.ComplexCoreAttribute(schema.ComplexParams{
				Name: "parent", Description: optional.NewString("The parent Agent."),
				SubAttributes: []schema.SimpleParams{
					schema.SimpleStringParams(schema.StringParams{Name: "value"}),
					schema.SimpleStringParams(schema.StringParams{Name: "$ref"}),
					schema.SimpleStringParams(schema.StringParams{Name: "display"}),
				},
			}),
			multi("owners", "Users or Groups that own this Agent.", "value", "$ref", "display"),
		},
	}
}
