package scimserver

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Events makes the server a SCIM events transmitter (RFC 9967): after each change to a User or
// an Agent made through its API, it pushes (RFC 8935) one signed Security Event Token per
// event to URL, and its ServiceProviderConfig advertises them (securityEvents).
type Events struct {
	// URL is the receiver's push endpoint; Audience the aud (the receiver's URL when empty).
	URL, Audience string
	// Token is sent as a bearer token.
	Token string
	// Issuer is the iss; Key signs (ES256 for a P-256 key, RS256 for RSA) under KeyID.
	Issuer string
	Key    crypto.Signer
	KeyID  string
	// Client pushes (http.DefaultClient when nil).
	Client *http.Client
}

// SCIM event URIs the server sends (RFC 9967 section 2.1).
const (
	EventCreate     = "urn:ietf:params:scim:event:prov:create:notice"
	EventPut        = "urn:ietf:params:scim:event:prov:put:notice"
	EventPatch      = "urn:ietf:params:scim:event:prov:patch:notice"
	EventDelete     = "urn:ietf:params:scim:event:prov:delete"
	EventActivate   = "urn:ietf:params:scim:event:prov:activate"
	EventDeactivate = "urn:ietf:params:scim:event:prov:deactivate"
)

var eventURIs = []string{EventCreate, EventPut, EventPatch, EventDelete, EventActivate, EventDeactivate}

// WithEvents makes the server push its SCIM events as e says.
func WithEvents(e Events) Option { return func(s *Server) { s.events = &eventSender{cfg: e} } }

// JWKS is the public key of the events' signer, as a JWK Set (JSON), for the receiver.
func (e Events) JWKS() []byte {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: e.Key.Public(), KeyID: e.KeyID, Use: "sig", Algorithm: string(e.alg())}}})
	return b
}

func (e Events) alg() jose.SignatureAlgorithm {
	if _, ok := e.Key.Public().(interface{ Size() int }); ok {
		return jose.RS256 // *rsa.PublicKey has Size
	}
	return jose.ES256
}

type eventSender struct {
	cfg  Events
	mu   sync.Mutex
	sent []SentEvent
	seq  int
}

// SentEvent is one token the server pushed and the receiver's answer.
type SentEvent struct {
	JTI, Type, ID string
	Status        int
}

// SentEvents are the tokens the server pushed (nil without WithEvents).
func (s *Server) SentEvents() []SentEvent {
	if s.events == nil {
		return nil
	}
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return append([]SentEvent(nil), s.events.sent...)
}

// recorder keeps what the handler answered.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// emit wraps the API: a change answered with success becomes events, pushed after the answer.
func (s *Server) emit(next http.Handler) http.Handler {
	if s.events == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, BasePath)
		kind := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 2)[0]
		if r.Method == http.MethodGet || (kind != "Users" && kind != "Agents") {
			next.ServeHTTP(w, r)
			return
		}
		reqBody, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status < 200 || rec.status > 299 {
			return
		}
		var res map[string]any
		_ = json.Unmarshal(rec.body.Bytes(), &res)
		id, _ := res["id"].(string)
		if id == "" {
			if i := strings.LastIndexByte(path, '/'); i > 0 {
				id = path[i+1:]
			}
		}
		ext, _ := res["externalId"].(string)
		var types []string
		switch r.Method {
		case http.MethodPost:
			types = []string{EventCreate}
		case http.MethodPut:
			types = []string{EventPut}
		case http.MethodPatch:
			types = []string{EventPatch}
		case http.MethodDelete:
			types = []string{EventDelete}
		}
		if r.Method == http.MethodPut || r.Method == http.MethodPatch {
			if active, ok := res["active"].(bool); ok && bytes.Contains(bytes.ToLower(reqBody), []byte(`"active"`)) {
				types = append(types, map[bool]string{true: EventActivate, false: EventDeactivate}[active])
			}
		}
		go s.events.push(kind, id, ext, types)
	})
}

// push sends one token per event type about the resource kind/id.
func (e *eventSender) push(kind, id, externalID string, types []string) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: e.cfg.alg(), Key: jose.JSONWebKey{Key: e.cfg.Key, KeyID: e.cfg.KeyID}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		return
	}
	aud := e.cfg.Audience
	if aud == "" {
		aud = e.cfg.URL
	}
	client := e.cfg.Client
	if client == nil {
		client = http.DefaultClient
	}
	sub := map[string]string{"format": "scim", "uri": "/" + kind + "/" + id}
	if externalID != "" {
		sub["externalId"] = externalID
	}
	txn := e.next()
	for _, typ := range types {
		jti := e.next()
		claims := map[string]any{"iss": e.cfg.Issuer, "iat": time.Now().Unix(), "jti": jti, "aud": aud, "txn": txn,
			"sub_id": sub, "events": map[string]any{typ: map[string]any{}}}
		payload, _ := json.Marshal(claims)
		jws, err := signer.Sign(payload)
		if err != nil {
			continue
		}
		tok, _ := jws.CompactSerialize()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.URL, strings.NewReader(tok))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", "Bearer "+e.cfg.Token)
		status := 0
		if resp, err := client.Do(req); err == nil {
			status = resp.StatusCode
			_ = resp.Body.Close()
		}
		cancel()
		e.mu.Lock()
		e.sent = append(e.sent, SentEvent{JTI: jti, Type: typ, ID: id, Status: status})
		e.mu.Unlock()
	}
}

func (e *eventSender) next() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	return hex.EncodeToString([]byte(time.Now().Format("150405.000000"))) + "-" + hex.EncodeToString([]byte{byte(e.seq >> 8), byte(e.seq)})
}
