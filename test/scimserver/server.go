package scimserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"

	"github.com/nhi-dev/scim-operator/test/loopback"
)

// BasePath is where the SCIM API is served; the endpoint is http://<addr>/scim/v2.
const BasePath = "/scim/v2"

// docsURI is the human documentation the ServiceProviderConfig points to.
const docsURI = "https://github.com/nhi-dev/scim-operator/blob/main/test/scimserver/PROFILES.md"

// Server is the reference service provider: the SCIM protocol, bearer-token auth, request
// counters and fault injection, over an in-memory store that survives Stop/Start. Its
// Quirks (see profiles.go) make it behave like a given real provider.
type Server struct {
	Users  *Store
	Groups *Store
	// Agents holds the Agent resources (/Agents); nil unless the server was made WithAgents.
	Agents *Store
	Faults *Faults

	token   string
	handler http.Handler
	stats   stats
	agents  bool
	wzdk    bool              // the Agents are draft-wzdk-scim-agent-resource's (named by agentUserName)
	types   map[string]*Store // endpoint ("/Users") → store

	qmu    sync.RWMutex
	quirks Quirks

	listener loopback.Server
	// events pushes SCIM events when the server was made WithEvents.
	events *eventSender
}

// New returns a server that accepts `Authorization: Bearer <token>` ("" accepts any request).
func New(token string, opts ...Option) (*Server, error) {
	s := &Server{Faults: &Faults{}, token: token}
	for _, o := range opts {
		o(s)
	}
	userSchema, enterprise := schema.CoreUserSchema(), schema.ExtensionEnterpriseUser()
	s.Users = newStore("User", "userName", s, userSchema, enterprise)
	s.Users.hidden = neverReturned(userSchema)
	s.Groups = newStore("Group", "displayName", s, schema.CoreGroupSchema())
	s.types = map[string]*Store{"/Users": s.Users, "/Groups": s.Groups}
	types := []scim.ResourceType{
		{
			ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
			Description: optional.NewString("User Account"),
			Schema:      userSchema,
			SchemaExtensions: []scim.SchemaExtension{
				{Schema: enterprise},
			},
			Handler: s.Users,
		},
		{
			ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups",
			Description: optional.NewString("Group"),
			Schema:      schema.CoreGroupSchema(),
			Handler:     s.Groups,
		},
	}
	if s.agents {
		agentSchema, nameAttr := AgentSchema(), "name"
		if s.wzdk {
			agentSchema, nameAttr = AgentSchemaWZDK(), "agentUserName"
		}
		s.Agents = newStore("Agent", nameAttr, s, agentSchema)
		s.types["/Agents"] = s.Agents
		types = append(types, scim.ResourceType{
			ID: optional.NewString("Agent"), Name: "Agent", Endpoint: "/Agents",
			Description: optional.NewString("Agent identities"),
			Schema:      agentSchema,
			Handler:     s.Agents,
		})
	}
	protocol, err := scim.NewServer(&scim.ServerArgs{
		// Served by spc() instead (etag, specUri...); the library needs one and uses its
		// maxResults as the largest page.
		ServiceProviderConfig: &scim.ServiceProviderConfig{MaxResults: defaultPageSize, SupportFiltering: true, SupportPatch: true},
		ResourceTypes:         types,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/", http.StripPrefix("/scim", protocol))
	// Counted first, so requests a fault answers are counted too: they are what clients sent.
	s.handler = s.count(s.Faults.wrap(s.authenticate(s.emit(s.dialect(mux)))))
	return s, nil
}

// defaultPageSize is the largest page a list returns without the MaxPageSize quirk.
const defaultPageSize = 200

// neverReturned lists the attributes of a schema with returned "never" (RFC 7643 §2.4),
// e.g. the User's password.
func neverReturned(s schema.Schema) []string {
	var out []string
	for _, a := range s.Attributes {
		if a.Returned() == "never" {
			out = append(out, a.Name())
		}
	}
	if len(out) == 0 && s.ID == scimUserSchema {
		out = []string{"password"}
	}
	return out
}

const scimUserSchema = "urn:ietf:params:scim:schemas:core:2.0:User"

// spc is the ServiceProviderConfig (RFC 7643 §5): what the quirks let the server do, or
// everything when the SPC lies.
func (s *Server) spc(q Quirks) map[string]any {
	all := q.SPCAdvertisesAll
	maxResults := defaultPageSize
	if q.MaxPageSize > 0 {
		maxResults = q.MaxPageSize
	}
	m := map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": docsURI,
		"patch":            map[string]any{"supported": all || !q.PatchUnsupported},
		"bulk":             map[string]any{"supported": all, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": maxResults},
		"changePassword":   map[string]any{"supported": all},
		"sort":             map[string]any{"supported": all},
		"etag":             map[string]any{"supported": all || !q.NoETags},
		"authenticationSchemes": []map[string]any{{
			"type":             "oauthbearertoken",
			"name":             "OAuth Bearer Token",
			"description":      "Authentication with a static bearer token (Authorization: Bearer <token>).",
			"specUri":          "https://www.rfc-editor.org/rfc/rfc6750",
			"documentationUri": docsURI,
			"primary":          true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": BasePath + "/ServiceProviderConfig"},
	}
	if q.CursorPaging {
		// RFC 9865 §3.
		m["pagination"] = map[string]any{"cursor": true, "index": !q.IgnoresStartIndex, "defaultPaginationMethod": "cursor",
			"defaultPageSize": maxResults, "maxPageSize": maxResults, "cursorTimeout": 3600}
	}
	if s.events != nil {
		// RFC 9967 section 4.
		m["securityEvents"] = map[string]any{"asyncRequest": "none", "eventUris": eventURIs}
	}
	if s.agents {
		// draft-abbey-scim-agent-extension-00 §4.1.
		m["agentExtension"] = map[string]any{"supported": true, "agentsSupported": true, "agenticApplicationsSupported": false}
	}
	return m
}

// ServeHTTP serves the API (for in-process use with httptest).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
			writeError(w, http.StatusUnauthorized, "", "Authorization failure: the bearer token is missing or not valid.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	body := map[string]any{
		"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:Error"},
		"status":  fmt.Sprint(status),
		"detail":  detail,
	}
	if scimType != "" {
		body["scimType"] = scimType
	}
	_ = json.NewEncoder(w).Encode(body)
}

// Start listens on addr (host:port; port 0 picks one) and serves until Stop.
func (s *Server) Start(addr string) error { return s.listener.Start(addr, s.handler) }

// Stop closes the listener and every open connection; the store is kept.
func (s *Server) Stop() { s.listener.Stop() }

// Addr is the listening address after Start.
func (s *Server) Addr() string { return s.listener.Addr() }

// Endpoint is the SCIM base URL after Start.
func (s *Server) Endpoint() string { return "http://" + s.Addr() + BasePath }

// UsersWhere returns the stored Users whose attribute equals value (case-insensitively).
func (s *Server) UsersWhere(attr, value string) []map[string]any {
	var out []map[string]any
	for _, u := range s.Users.All() {
		if v, _ := u[attr].(string); strings.EqualFold(v, value) {
			out = append(out, u)
		}
	}
	return out
}

// UsersWhereFunc returns the stored Users for which keep is true.
func (s *Server) UsersWhereFunc(keep func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for _, u := range s.Users.All() {
		if keep(u) {
			out = append(out, u)
		}
	}
	return out
}

// memberDeleted removes a deleted User (or Agent) from the members of every group, unless
// the StaleMembers quirk keeps it there.
func (s *Server) memberDeleted(id string) {
	if s.Quirks().StaleMembers {
		return
	}
	s.Groups.removeMemberEverywhere(id)
}
