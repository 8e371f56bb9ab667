// Package setreceiver is a Security Event Token push receiver (RFC 8935) for tests and local
// development: it verifies each SET's JWS signature against a JWK Set, its typ, iss, aud, iat
// and jti (a replay is refused), parses its one RISC event and subject, and records what it
// accepted. It can be told to fail (503, 429 with Retry-After, a dropped connection) for a
// number of requests, accept a SET and drop the connection instead of answering (so the retry
// is a replay), and be stopped and started again on the same address (connection refused in
// between), so tests can prove a transmitter's retries.
//
// It is written independently of internal/secevent (its own claim structs and event URIs), so
// a mistake there is not mirrored here.
package setreceiver

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/nhi-dev/scim-operator/test/loopback"
)

// Path is where the receiver accepts SETs: the push endpoint is http://<addr>/events.
const Path = "/events"

// RISC event types the receiver accepts.
const (
	AccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	AccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
)

// maxBody bounds a pushed SET.
const maxBody = 64 << 10

// Options configure a Receiver.
type Options struct {
	// Issuer is the iss every SET must carry.
	Issuer string
	// Audience must be one of each SET's aud values.
	Audience string
	// Keys verify signatures; a SET's kid picks the key.
	Keys jose.JSONWebKeySet
	// Token, when set, is the bearer token every request must present.
	Token string
	// MaxAge refuses SETs whose iat is older (0: no limit).
	MaxAge time.Duration
	// Leeway is how far in the future iat may be (clock skew); one minute when zero.
	Leeway time.Duration
	// Now is the receiver's clock; time.Now when nil.
	Now func() time.Time
}

// SET is one accepted Security Event Token.
type SET struct {
	JTI         string
	Issuer      string
	Audience    []string
	IssuedAt    time.Time
	TimeOfEvent time.Time // zero without toe
	Txn         string
	KeyID       string
	Algorithm   string
	// Subject is sub_id: its format and members.
	Subject map[string]string
	// EventType is the one event's URI; Event its payload.
	EventType string
	Event     map[string]any
}

// Rejection is one refused request: the RFC 8935 err code sent back and why.
type Rejection struct {
	Status      int
	Code        string
	Description string
}

// fault makes the receiver answer the next requests with status (0: drop the connection).
type fault struct {
	remaining  int // < 0: until Recover
	status     int
	retryAfter string
}

// Receiver is the push endpoint.
type Receiver struct {
	opts Options

	mu       sync.Mutex
	accepted []SET
	seen     map[string]bool
	rejected []Rejection
	requests int
	faulted  int
	fault    fault
	// dropAfterAccept: accept the next SETs but close the connection instead of answering.
	dropAfterAccept int

	listener loopback.Server
}

// New returns a receiver with opts.
func New(opts Options) *Receiver {
	if opts.Leeway == 0 {
		opts.Leeway = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Receiver{opts: opts, seen: map[string]bool{}}
}

// SetKeys replaces the verification keys (key rotation, wrong-key tests).
func (r *Receiver) SetKeys(keys jose.JSONWebKeySet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opts.Keys = keys
}

// FailNext answers the next n requests with status (503, 429, 500...) and, when not empty, a
// Retry-After header; status 0 closes the connection without an answer. n < 0 keeps failing
// until Recover.
func (r *Receiver) FailNext(n, status int, retryAfter string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = fault{remaining: n, status: status, retryAfter: retryAfter}
}

// Recover ends FailNext.
func (r *Receiver) Recover() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = fault{}
}

// Accepted returns the SETs accepted so far, in order.
func (r *Receiver) Accepted() []SET {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

// Rejected returns the requests refused so far (faults injected by FailNext not included).
func (r *Receiver) Rejected() []Rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rejected)
}

// Requests counts every request that reached the handler, faulted ones included.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Faulted counts the requests answered by FailNext.
func (r *Receiver) Faulted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faulted
}

// ServeHTTP implements the push endpoint.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.injectFault(w) {
		return
	}
	if req.URL.Path != Path {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.refuse(w, http.StatusMethodNotAllowed, ErrInvalidRequest, "only POST")
		return
	}
	set, rej := r.verify(req)
	if rej != nil {
		r.refuse(w, rej.Status, rej.Code, rej.Description)
		return
	}
	r.mu.Lock()
	if r.seen[set.JTI] {
		r.mu.Unlock()
		r.refuse(w, http.StatusBadRequest, ErrInvalidRequest, "duplicate jti: this SET was already received")
		return
	}
	r.seen[set.JTI] = true
	r.accepted = append(r.accepted, *set)
	drop := r.dropAfterAccept > 0
	if drop {
		r.dropAfterAccept--
	}
	r.mu.Unlock()
	if drop && closeConnection(w) {
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// AcceptThenDrop makes the receiver accept the next n valid SETs but close the connection
// instead of answering 202: the transmitter cannot know they arrived, and its retry is a replay.
func (r *Receiver) AcceptThenDrop(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropAfterAccept = n
}

// closeConnection closes the request's connection without an answer.
func closeConnection(w http.ResponseWriter) bool {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// injectFault answers a request FailNext asked for, counting every request.
func (r *Receiver) injectFault(w http.ResponseWriter) bool {
	r.mu.Lock()
	r.requests++
	f := r.fault
	active := f.remaining != 0
	if active {
		r.faulted++
		if f.remaining > 0 {
			r.fault.remaining--
		}
	}
	r.mu.Unlock()
	if !active {
		return false
	}
	if f.status == 0 {
		if closeConnection(w) {
			return true
		}
		f.status = http.StatusServiceUnavailable
	}
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	http.Error(w, "receiver down (injected)", f.status)
	return true
}

// RFC 8935 section 2.4 error codes.
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidKey           = "invalid_key"
	ErrInvalidIssuer        = "invalid_issuer"
	ErrInvalidAudience      = "invalid_audience"
	ErrAuthenticationFailed = "authentication_failed"
)

func (r *Receiver) refuse(w http.ResponseWriter, status int, code, desc string) {
	r.mu.Lock()
	r.rejected = append(r.rejected, Rejection{Status: status, Code: code, Description: desc})
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"err": code, "description": desc})
}

func bad(code, format string, args ...any) *Rejection {
	return &Rejection{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)}
}

// claims is the SET payload as this receiver reads it.
type claims struct {
	Iss    string                     `json:"iss"`
	Iat    *int64                     `json:"iat"`
	Jti    string                     `json:"jti"`
	Aud    jwt.Audience               `json:"aud"`
	Toe    *int64                     `json:"toe"`
	Txn    string                     `json:"txn"`
	Sub    *string                    `json:"sub"`
	Exp    *int64                     `json:"exp"`
	SubID  map[string]any             `json:"sub_id"`
	Events map[string]json.RawMessage `json:"events"`
}

// subjectMembers are the members each RFC 9493 format requires.
var subjectMembers = map[string][]string{
	"opaque":       {"id"},
	"uri":          {"uri"},
	"account":      {"uri"},
	"email":        {"email"},
	"iss_sub":      {"iss", "sub"},
	"phone_number": {"phone_number"},
}

func (r *Receiver) verify(req *http.Request) (*SET, *Rejection) {
	r.mu.Lock()
	opts := r.opts
	r.mu.Unlock()

	if opts.Token != "" && req.Header.Get("Authorization") != "Bearer "+opts.Token {
		return nil, &Rejection{Status: http.StatusUnauthorized, Code: ErrAuthenticationFailed, Description: "bearer token missing or wrong"}
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/secevent+jwt" {
		return nil, bad(ErrInvalidRequest, "Content-Type must be application/secevent+jwt")
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil {
		return nil, bad(ErrInvalidRequest, "reading the body failed")
	}
	if len(body) > maxBody {
		return nil, bad(ErrInvalidRequest, "SET larger than %d bytes", maxBody)
	}
	tok, err := jwt.ParseSigned(strings.TrimSpace(string(body)),
		[]jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384})
	if err != nil {
		return nil, bad(ErrInvalidRequest, "not a JWS compact serialisation with RS256/ES256/ES384")
	}
	if len(tok.Headers) != 1 {
		return nil, bad(ErrInvalidRequest, "exactly one signature expected")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(strings.TrimPrefix(typ, "application/"), "secevent+jwt") {
		return nil, bad(ErrInvalidRequest, "typ header is %q, not secevent+jwt", typ)
	}
	keys := opts.Keys.Key(h.KeyID)
	if h.KeyID == "" || len(keys) == 0 {
		return nil, bad(ErrInvalidKey, "unknown kid %q", h.KeyID)
	}
	var c claims
	var verified bool
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if tok.Claims(k.Key, &c) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, bad(ErrInvalidKey, "signature does not verify with key %q", h.KeyID)
	}

	switch {
	case c.Iss != opts.Issuer:
		return nil, bad(ErrInvalidIssuer, "iss %q is not %q", c.Iss, opts.Issuer)
	case !c.Aud.Contains(opts.Audience):
		return nil, bad(ErrInvalidAudience, "aud does not contain %q", opts.Audience)
	case c.Jti == "":
		return nil, bad(ErrInvalidRequest, "jti missing")
	case c.Iat == nil:
		return nil, bad(ErrInvalidRequest, "iat missing")
	case c.Sub != nil:
		return nil, bad(ErrInvalidRequest, "sub present: the subject is sub_id")
	case c.Exp != nil:
		return nil, bad(ErrInvalidRequest, "exp present: a SET is not an access token")
	}
	now := opts.Now()
	iat := time.Unix(*c.Iat, 0)
	if iat.After(now.Add(opts.Leeway)) {
		return nil, bad(ErrInvalidRequest, "iat is in the future")
	}
	if opts.MaxAge > 0 && now.Sub(iat) > opts.MaxAge {
		return nil, bad(ErrInvalidRequest, "iat older than %s", opts.MaxAge)
	}

	subject, rej := parseSubject(c.SubID)
	if rej != nil {
		return nil, rej
	}
	if len(c.Events) != 1 {
		return nil, bad(ErrInvalidRequest, "events must hold exactly one event, not %d", len(c.Events))
	}
	set := &SET{JTI: c.Jti, Issuer: c.Iss, Audience: c.Aud, IssuedAt: iat, Txn: c.Txn,
		KeyID: h.KeyID, Algorithm: h.Algorithm, Subject: subject}
	if c.Toe != nil {
		set.TimeOfEvent = time.Unix(*c.Toe, 0)
	}
	for uri, raw := range c.Events {
		set.EventType = uri
		if err := json.Unmarshal(raw, &set.Event); err != nil || set.Event == nil {
			return nil, bad(ErrInvalidRequest, "event payload is not a JSON object")
		}
	}
	switch set.EventType {
	case AccountDisabled:
		for k, v := range set.Event {
			reason, _ := v.(string)
			if k != "reason" || (reason != "hijacking" && reason != "bulk-account") {
				return nil, bad(ErrInvalidRequest, "account-disabled: unexpected member %q or reason", k)
			}
		}
	case AccountPurged:
		if len(set.Event) != 0 {
			return nil, bad(ErrInvalidRequest, "account-purged has no attributes")
		}
	default:
		return nil, bad(ErrInvalidRequest, "event type %q is not accepted", set.EventType)
	}
	return set, nil
}

func parseSubject(raw map[string]any) (map[string]string, *Rejection) {
	if raw == nil {
		return nil, bad(ErrInvalidRequest, "sub_id missing")
	}
	format, _ := raw["format"].(string)
	required, ok := subjectMembers[format]
	if !ok {
		return nil, bad(ErrInvalidRequest, "sub_id format %q is not accepted", format)
	}
	out := map[string]string{}
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, bad(ErrInvalidRequest, "sub_id member %q is not a string", k)
		}
		out[k] = s
	}
	for _, m := range required {
		if out[m] == "" {
			return nil, bad(ErrInvalidRequest, "sub_id format %q needs %q", format, m)
		}
	}
	if len(out) != len(required)+1 {
		return nil, bad(ErrInvalidRequest, "sub_id format %q has unexpected members", format)
	}
	return out, nil
}

// Start listens on addr (host:port; port 0 picks one) and serves until Stop.
func (r *Receiver) Start(addr string) error { return r.listener.Start(addr, r) }

// Stop closes the listener and open connections: connections are refused until Start. What
// was accepted is kept.
func (r *Receiver) Stop() { r.listener.Stop() }

// Addr is the listening address after Start (kept after Stop, so Start(Addr()) reuses it).
func (r *Receiver) Addr() string { return r.listener.Addr() }

// URL is the push endpoint after Start.
func (r *Receiver) URL() string { return "http://" + r.Addr() + Path }
