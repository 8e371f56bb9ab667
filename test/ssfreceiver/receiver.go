// Package ssfreceiver is a Shared Signals Framework 1.0 receiver written from the
// specifications alone, on a JOSE library the operator does not use (lestrrat-go/jwx), to test
// the operator's transmitter as a receiver nobody here wrote would: it discovers the
// transmitter from its issuer, creates a poll stream, asks for verification, polls (RFC 8936),
// verifies every token against the published JWK Set and acknowledges it.
//
// It shares no code or types with the operator.
package ssfreceiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Receiver talks to one transmitter with one bearer token.
type Receiver struct {
	HTTP   *http.Client
	Token  string
	Issuer string
	// Metadata is the transmitter's configuration metadata, as discovered.
	Metadata map[string]any
	// Stream is the configuration of the stream this receiver created or chose.
	Stream map[string]any
	// Trace, when set, gets every request and answer (bearer token and signatures elided), to
	// show an exchange in the documentation.
	Trace io.Writer
	keys  jwk.Set
}

// Event is one verified Security Event Token.
type Event struct {
	JTI     string
	Type    string
	Payload map[string]any
	Claims  map[string]any
	SubID   map[string]any
}

// WellKnown is the configuration URL of issuer (SSF 1.0 section 7.2: the well-known path goes
// between the host and the issuer's path).
func WellKnown(issuer string) (string, error) {
	u, err := url.Parse(strings.TrimRight(issuer, "/"))
	if err != nil {
		return "", err
	}
	u.Path = "/.well-known/ssf-configuration" + u.Path
	return u.String(), nil
}

// Discover reads the transmitter's metadata and its JWK Set.
func Discover(ctx context.Context, hc *http.Client, issuer, token string, opts ...Option) (*Receiver, error) {
	r := &Receiver{HTTP: hc, Token: token, Issuer: issuer}
	for _, o := range opts {
		o(r)
	}
	wk, err := WellKnown(issuer)
	if err != nil {
		return nil, err
	}
	if _, err := r.do(ctx, http.MethodGet, wk, nil, http.StatusOK, &r.Metadata); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if r.Metadata["issuer"] != issuer {
		return nil, fmt.Errorf("discovery: metadata issuer %v is not %s", r.Metadata["issuer"], issuer)
	}
	jwksURI, _ := r.Metadata["jwks_uri"].(string)
	if jwksURI == "" {
		return nil, errors.New("discovery: no jwks_uri")
	}
	if err := r.RefreshKeys(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Option configures Discover.
type Option func(*Receiver)

// WithTrace writes the exchange to w (Receiver.Trace).
func WithTrace(w io.Writer) Option { return func(r *Receiver) { r.Trace = w } }

// RefreshKeys fetches the JWK Set again (after a key rotation).
func (r *Receiver) RefreshKeys(ctx context.Context) error {
	if r.Trace != nil {
		if _, err := r.do(ctx, http.MethodGet, r.Metadata["jwks_uri"].(string), nil, http.StatusOK, nil); err != nil {
			return err
		}
	}
	keys, err := jwk.Fetch(ctx, r.Metadata["jwks_uri"].(string), jwk.WithHTTPClient(r.HTTP))
	if err != nil {
		return fmt.Errorf("fetching the JWK Set: %w", err)
	}
	r.keys = keys
	return nil
}

func (r *Receiver) endpoint(name string) (string, error) {
	s, _ := r.Metadata[name].(string)
	if s == "" {
		return "", fmt.Errorf("the transmitter advertises no %s", name)
	}
	return s, nil
}

// CreateStream creates a stream: poll delivery unless delivery is given.
func (r *Receiver) CreateStream(ctx context.Context, eventsRequested []string, delivery map[string]any) (map[string]any, error) {
	ep, err := r.endpoint("configuration_endpoint")
	if err != nil {
		return nil, err
	}
	body := map[string]any{"events_requested": eventsRequested, "description": "independent test receiver"}
	if delivery != nil {
		body["delivery"] = delivery
	}
	var cfg map[string]any
	if _, err := r.do(ctx, http.MethodPost, ep, body, http.StatusCreated, &cfg); err != nil {
		return nil, fmt.Errorf("creating a stream: %w", err)
	}
	if cfg["iss"] != r.Issuer {
		return nil, fmt.Errorf("the stream's iss %v is not the issuer %s", cfg["iss"], r.Issuer)
	}
	r.Stream = cfg
	return cfg, nil
}

// StreamID is the stream's id.
func (r *Receiver) StreamID() string { s, _ := r.Stream["stream_id"].(string); return s }

// ReadStream reads the stream's configuration.
func (r *Receiver) ReadStream(ctx context.Context) (map[string]any, error) {
	ep, err := r.endpoint("configuration_endpoint")
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	_, err = r.do(ctx, http.MethodGet, ep+"?stream_id="+url.QueryEscape(r.StreamID()), nil, http.StatusOK, &cfg)
	return cfg, err
}

// DeleteStream deletes the stream.
func (r *Receiver) DeleteStream(ctx context.Context) error {
	ep, err := r.endpoint("configuration_endpoint")
	if err != nil {
		return err
	}
	_, err = r.do(ctx, http.MethodDelete, ep+"?stream_id="+url.QueryEscape(r.StreamID()), nil, http.StatusNoContent, nil)
	return err
}

// SetStatus updates the stream's status (enabled, paused, disabled).
func (r *Receiver) SetStatus(ctx context.Context, status, reason string) (map[string]any, error) {
	ep, err := r.endpoint("status_endpoint")
	if err != nil {
		return nil, err
	}
	var out map[string]any
	_, err = r.do(ctx, http.MethodPost, ep, map[string]any{"stream_id": r.StreamID(), "status": status, "reason": reason}, http.StatusOK, &out)
	return out, err
}

// Status reads the stream's status.
func (r *Receiver) Status(ctx context.Context) (map[string]any, error) {
	ep, err := r.endpoint("status_endpoint")
	if err != nil {
		return nil, err
	}
	var out map[string]any
	_, err = r.do(ctx, http.MethodGet, ep+"?stream_id="+url.QueryEscape(r.StreamID()), nil, http.StatusOK, &out)
	return out, err
}

// Verify asks for a verification event carrying state.
func (r *Receiver) Verify(ctx context.Context, state string) error {
	ep, err := r.endpoint("verification_endpoint")
	if err != nil {
		return err
	}
	_, err = r.do(ctx, http.MethodPost, ep, map[string]any{"stream_id": r.StreamID(), "state": state}, http.StatusNoContent, nil)
	return err
}

// Poll acknowledges ack and fetches up to maxEvents tokens (RFC 8936), each verified.
func (r *Receiver) Poll(ctx context.Context, maxEvents int, ack []string, returnImmediately bool) ([]Event, bool, error) {
	delivery, _ := r.Stream["delivery"].(map[string]any)
	ep, _ := delivery["endpoint_url"].(string)
	if ep == "" {
		return nil, false, errors.New("the stream has no poll endpoint_url")
	}
	body := map[string]any{"maxEvents": maxEvents, "returnImmediately": returnImmediately}
	if len(ack) > 0 {
		body["ack"] = ack
	}
	var resp struct {
		Sets          map[string]string `json:"sets"`
		MoreAvailable bool              `json:"moreAvailable"`
	}
	if _, err := r.do(ctx, http.MethodPost, ep, body, http.StatusOK, &resp); err != nil {
		return nil, false, fmt.Errorf("polling: %w", err)
	}
	if resp.Sets == nil {
		return nil, false, errors.New("the poll answer has no sets member")
	}
	var out []Event
	for jti, tok := range resp.Sets {
		ev, err := r.verify(tok)
		if err != nil {
			return nil, false, fmt.Errorf("token %s: %w", jti, err)
		}
		if ev.JTI != jti {
			return nil, false, fmt.Errorf("token listed as %s carries jti %s", jti, ev.JTI)
		}
		out = append(out, ev)
	}
	return out, resp.MoreAvailable, nil
}

// verify checks a token as SSF 1.0 section 4 and RFC 8417 require and returns its event.
func (r *Receiver) verify(tok string) (Event, error) {
	msg, err := jws.Parse([]byte(tok))
	if err != nil {
		return Event{}, err
	}
	if len(msg.Signatures()) != 1 {
		return Event{}, errors.New("not exactly one signature")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if typ, _ := hdr.Type(); typ != "secevent+jwt" {
		return Event{}, fmt.Errorf("typ is %q, not secevent+jwt", typ)
	}
	payload, err := jws.Verify([]byte(tok), jws.WithKeySet(r.keys, jws.WithRequireKid(true)))
	if err != nil {
		return Event{}, fmt.Errorf("signature: %w", err)
	}
	if alg, _ := hdr.Algorithm(); alg == jwa.NoSignature() {
		return Event{}, errors.New("unsigned")
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Event{}, err
	}
	if claims["iss"] != r.Issuer {
		return Event{}, fmt.Errorf("iss %v is not %s", claims["iss"], r.Issuer)
	}
	if !sameAud(claims["aud"], r.Stream["aud"]) {
		return Event{}, fmt.Errorf("aud %v is not the stream's %v", claims["aud"], r.Stream["aud"])
	}
	for _, forbidden := range []string{"sub", "exp"} {
		if _, ok := claims[forbidden]; ok {
			return Event{}, fmt.Errorf("the token carries %s", forbidden)
		}
	}
	if _, ok := claims["iat"].(float64); !ok {
		return Event{}, errors.New("no iat")
	}
	sub, ok := claims["sub_id"].(map[string]any)
	if !ok || sub["format"] == "" {
		return Event{}, errors.New("no sub_id")
	}
	events, ok := claims["events"].(map[string]any)
	if !ok || len(events) != 1 {
		return Event{}, errors.New("events does not hold exactly one event")
	}
	ev := Event{Claims: claims, SubID: sub}
	ev.JTI, _ = claims["jti"].(string)
	for t, p := range events {
		ev.Type = t
		ev.Payload, _ = p.(map[string]any)
	}
	return ev, nil
}

func sameAud(a, b any) bool {
	norm := func(v any) string {
		switch x := v.(type) {
		case string:
			return x
		case []any:
			parts := make([]string, 0, len(x))
			for _, p := range x {
				s, _ := p.(string)
				parts = append(parts, s)
			}
			if len(parts) == 1 {
				return parts[0]
			}
			return strings.Join(parts, "\x00")
		}
		return fmt.Sprint(v)
	}
	return norm(a) == norm(b)
}

// StatusError is an answer other than the one expected.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

func (r *Receiver) do(ctx context.Context, method, u string, body any, want int, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if r.Trace != nil {
		r.trace(req, body, resp, b)
	}
	if resp.StatusCode != want {
		return resp, &StatusError{Code: resp.StatusCode, Body: string(b)}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp, fmt.Errorf("decoding %s: %w", u, err)
		}
	}
	return resp, nil
}

var jwsLike = regexp.MustCompile(`"(eyJ[A-Za-z0-9_-]{8})[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"`)

// trace writes one exchange: the request line, its JSON body, the status and the answer's
// JSON, indented, with compact JWS values cut to their first characters.
func (r *Receiver) trace(req *http.Request, body any, resp *http.Response, answer []byte) {
	show := func(b []byte) string {
		var v any
		if json.Unmarshal(b, &v) != nil {
			return string(b)
		}
		out, _ := json.MarshalIndent(v, "", "  ")
		return jwsLike.ReplaceAllString(string(out), `"$1…"`)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", req.Method, req.URL.RequestURI())
	if r.Token != "" {
		b.WriteString("Authorization: Bearer <the receiver's ServiceAccount token>\n")
	}
	if body != nil {
		raw, _ := json.Marshal(body)
		fmt.Fprintf(&b, "\n%s\n", show(raw))
	}
	fmt.Fprintf(&b, "\n→ %d %s\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	if len(answer) > 0 {
		fmt.Fprintf(&b, "\n%s\n", show(answer))
	}
	b.WriteString("\n---\n\n")
	_, _ = io.WriteString(r.Trace, b.String())
}

// Decode returns a verified token's claims as the receiver read them (for a trace).
func Decode(ev Event) string {
	b, _ := json.MarshalIndent(ev.Claims, "", "  ")
	return string(b)
}
