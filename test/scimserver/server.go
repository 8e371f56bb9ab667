package scimserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// BasePath is where the SCIM API is served; the endpoint is http://<addr>/scim/v2.
const BasePath = "/scim/v2"

// Server is the reference service provider: the SCIM protocol, bearer-token auth, request
// counters and fault injection, over an in-memory store that survives Stop/Start.
type Server struct {
	Users  *Store
	Groups *Store
	Faults *Faults

	token   string
	handler http.Handler
	stats   stats

	mu   sync.Mutex
	http *http.Server
	addr string
}

// New returns a server that accepts `Authorization: Bearer <token>`.
func New(token string) (*Server, error) {
	s := &Server{
		Users:  newStore("User", "userName"),
		Groups: newStore("Group", "displayName"),
		Faults: &Faults{},
		token:  token,
	}
	protocol, err := scim.NewServer(&scim.ServerArgs{
		ServiceProviderConfig: &scim.ServiceProviderConfig{
			DocumentationURI: optional.NewString("https://github.com/nhi-dev/scim-operator"),
			AuthenticationSchemes: []scim.AuthenticationScheme{{
				Type: scim.AuthenticationTypeOauthBearerToken, Name: "Bearer token",
				Description: "Authentication with a static bearer token.", Primary: true,
			}},
			MaxResults:       200,
			SupportFiltering: true,
			SupportPatch:     true,
		},
		ResourceTypes: []scim.ResourceType{
			{
				ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
				Description: optional.NewString("User Account"),
				Schema:      schema.CoreUserSchema(),
				SchemaExtensions: []scim.SchemaExtension{
					{Schema: schema.ExtensionEnterpriseUser()},
				},
				Handler: s.Users,
			},
			{
				ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups",
				Description: optional.NewString("Group"),
				Schema:      schema.CoreGroupSchema(),
				Handler:     s.Groups,
			},
		},
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/", http.StripPrefix("/scim", protocol))
	// Counted first, so requests a fault answers are counted too: they are what clients sent.
	s.handler = s.count(s.Faults.wrap(s.authenticate(mux)))
	return s, nil
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
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http != nil {
		return errors.New("already started")
	}
	var ln net.Listener
	var err error
	// A port just released by Stop can take a moment to be reusable.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	s.http = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	srv := s.http
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Stop closes the listener and every open connection; the store is kept.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	_ = s.http.Close()
	s.http = nil
}

// Addr is the listening address after Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

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
