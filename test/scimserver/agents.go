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

// AgentSchemaWZDK is the Agent resource schema of draft-wzdk-scim-agent-resource-00 ("SCIM
// Agent Resource", Wahl, Zollner, Dingle, Kazzouzi, June 2026), the merger of the earlier agent
// drafts: the same resource type, endpoint (/Agents) and schema URN as AgentSchema, but an
// Agent is named by agentUserName, and agentUserName, displayName and active are REQUIRED;
// description and owners (references to the owners' User resources) are optional. As read
// from the documents citing it (its full text was not reachable from this project's machines),
// the characteristics below that it does not state follow RFC 7643's userName and the earlier
// draft's owners: agentUserName unique (server) and caseExact false, owners read-write with
// value, $ref (User) and display; groups read-only, as a User's.
func AgentSchemaWZDK() schema.Schema {
	ref := func(name, desc string, mutability schema.AttributeMutability) schema.CoreAttribute {
		return schema.ComplexCoreAttribute(schema.ComplexParams{
			Name: name, Description: optional.NewString(desc), MultiValued: true, Mutability: mutability,
			SubAttributes: []schema.SimpleParams{
				schema.SimpleStringParams(schema.StringParams{Name: "value"}),
				schema.SimpleReferenceParams(schema.ReferenceParams{Name: "$ref", ReferenceTypes: []schema.AttributeReferenceType{"User", "Group"}}),
				schema.SimpleStringParams(schema.StringParams{Name: "display"}),
			},
		})
	}
	return schema.Schema{
		ID:          SchemaAgent,
		Name:        optional.NewString("Agent"),
		Description: optional.NewString("Agent (draft-wzdk-scim-agent-resource-00)"),
		Attributes: []schema.CoreAttribute{
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
				Name:        "agentUserName",
				Description: optional.NewString("The unique name of the Agent. REQUIRED."),
				Required:    true,
				Uniqueness:  schema.AttributeUniquenessServer(),
			})),
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
				Name: "displayName", Description: optional.NewString("The name of the Agent, suitable for display. REQUIRED."), Required: true,
			})),
			schema.SimpleCoreAttribute(schema.SimpleBooleanParams(schema.BooleanParams{
				Name: "active", Description: optional.NewString("The Agent's administrative status. REQUIRED."), Required: true,
			})),
			schema.SimpleCoreAttribute(schema.SimpleStringParams(schema.StringParams{
				Name: "description", Description: optional.NewString("The description of the Agent."),
			})),
			ref("owners", "The Users (or Groups) accountable for the Agent.", schema.AttributeMutabilityReadWrite()),
			ref("groups", "Group membership (read-only).", schema.AttributeMutabilityReadOnly()),
		},
	}
}
