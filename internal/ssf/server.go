package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

const (
	// DefaultMaxPollWait is how long a long poll (returnImmediately false) waits for a token.
	DefaultMaxPollWait = 20 * time.Second
	// DefaultMaxEvents is how many tokens a poll without maxEvents gets at most.
	DefaultMaxEvents = 100
	// maxRequestBytes bounds a request body (1,000 acknowledgements of 32-character jtis fit).
	maxRequestBytes = 64 << 10
	// maxAcks bounds the jtis one poll acknowledges or reports errors for.
	maxAcks = 1000
	// pollInterval is how often a long poll looks for a token.
	pollInterval = 200 * time.Millisecond
	// MinVerificationInterval is the least time between two verification requests of a stream
	// (min_verification_interval): each is a write, and on a push stream a request to the
	// receiver.
	MinVerificationInterval = 5 * time.Second
	// specVersion is the SSF version the metadata names.
	specVersion = "1_0"
)

// Server is the transmitter's HTTP API. Its reads come from the manager's cache (identities,
// with IndexPendingStream and IndexPendingJTI; streams), its writes go to the API server.
type Server struct {
	Client client.Client
	// APIReader reads an identity afresh when an acknowledgement lost a conflict.
	APIReader client.Reader
	Auth      *Auth
	Keys      *Keys
	// Issuer is the cluster-wide issuer, an https URL: the base of every endpoint.
	Issuer string
	// OperatorNamespace holds the cluster-wide streams (they carry every namespace's events).
	OperatorNamespace string
	// ClusterID makes the externalId in SCIM events' subjects.
	ClusterID string
	Clock     clock.PassiveClock
	// MaxPollWait bounds a long poll (DefaultMaxPollWait when zero).
	MaxPollWait time.Duration
	// Flags is told of the accounts a provider's SCIM event is about: their identities read
	// them at once.
	Flags *targets.SweepFlags
	// Elected is closed once this replica leads (mgr.Elected()); nil: it always does.
	Elected <-chan struct{}

	// CallerRate overrides DefaultCallerRate (requests per second per remote address).
	CallerRate rate.Limit
	// WriterRate overrides DefaultWriterRate (writes per second per authenticated user).
	WriterRate rate.Limit

	once     sync.Once
	signed   *lru.Cache // jti and kid → the token: a poll that acknowledges nothing signs nothing again
	callers  *lru.Cache // remote address → its rate.Limiter
	writers  *lru.Cache // user name → its rate.Limiter
	verified *lru.Cache // stream UID → when its last verification was asked for
	secrets  *lru.Cache // a target's events Secrets, for secretTTL
	// targetEvents limits each target's events (target key → its rate.Limiter).
	targetEvents *lru.Cache
}

// DefaultWriterRate bounds the writes per second one user makes through the API (twice that
// in a burst): each is a write to the API server by the operator's ServiceAccount, and a
// verification on a push stream a request to the receiver.
const DefaultWriterRate = 10

// DefaultCallerRate bounds the requests per second one remote address makes (twice that in a
// burst), before any TokenReview: a flood of bogus tokens costs the API server nothing past it.
// Behind an Ingress every receiver shares the Ingress's address, hence a generous default.
const DefaultCallerRate = 50

func (s *Server) init() {
	s.once.Do(func() {
		s.signed = lru.New(20000)
		s.callers = lru.New(4096)
		s.writers = lru.New(4096)
		s.verified = lru.New(4096)
		s.secrets = lru.New(1024)
		s.targetEvents = lru.New(4096)
	})
}

// allow takes a token from key's limiter in limiters (made at rate r, or def when r is 0).
func allow(limiters *lru.Cache, key string, r, def rate.Limit) bool {
	if r <= 0 {
		r = def
	}
	l, ok := limiters.Get(key)
	if !ok {
		l = rate.NewLimiter(r, 2*int(r))
		limiters.Add(key, l)
	}
	return l.(*rate.Limiter).Allow()
}

// sign signs claims, or returns the token already signed for its jti with the same key.
func (s *Server) sign(signer *secevent.Signer, c setClaims) (string, error) {
	s.init()
	// The audience is part of the key: a stream whose audience changed gets its tokens again.
	key := c.ID + "/" + signer.KeyID() + "/" + strings.Join(c.Audience, "\x00")
	if tok, ok := s.signed.Get(key); ok {
		return tok.(string), nil
	}
	tok, err := signer.SignClaims(c)
	if err == nil {
		s.signed.Add(key, tok)
	}
	return tok, err
}

// limited answers 429 to a remote address over its rate.
func (s *Server) limited(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.init()
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if !allow(s.callers, host, s.CallerRate, DefaultCallerRate) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "", "too many requests from this address")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Handler routes the transmitter's endpoints: the cluster-wide issuer at the root, each
// namespace's under /namespaces/<namespace>.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", s.scoped(s.metadata))
	mux.HandleFunc("GET /.well-known/ssf-configuration/namespaces/{ns}", s.scoped(s.metadata))
	mux.HandleFunc("GET /jwks.json", s.jwks)
	for _, prefix := range []string{"", "/namespaces/{ns}"} {
		mux.HandleFunc(prefix+"/ssf/streams", s.scoped(s.streams))
		mux.HandleFunc(prefix+"/ssf/status", s.scoped(s.status))
		mux.HandleFunc("POST "+prefix+"/ssf/verify", s.scoped(s.verify))
		mux.HandleFunc("POST "+prefix+"/ssf/poll/{stream}", s.scoped(s.poll))
	}
	// A target's provider pushes its SCIM events (RFC 9967) here (providerevents.go).
	mux.HandleFunc("POST /scim-events/namespaces/{ns}/scimtargets/{name}", s.providerEvents)
	mux.HandleFunc("POST /scim-events/clusterscimtargets/{name}", s.providerEvents)
	return s.limited(mux)
}

// scope is the namespace an endpoint serves and its issuer.
type scope struct {
	namespace string // where its streams are
	issuer    string
}

// scoped resolves the request's scope (404 for a namespace that is not a valid name, or the
// operator's own, whose streams the cluster-wide issuer serves).
func (s *Server) scoped(h func(http.ResponseWriter, *http.Request, scope)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns := r.PathValue("ns")
		if ns == "" {
			h(w, r, scope{namespace: s.OperatorNamespace, issuer: issuerOf(s.Issuer, "")})
			return
		}
		if len(validation.IsDNS1123Label(ns)) > 0 || ns == s.OperatorNamespace {
			writeError(w, http.StatusNotFound, "", "no such issuer")
			return
		}
		h(w, r, scope{namespace: ns, issuer: issuerOf(s.Issuer, ns)})
	}
}

// issuerOfStream is the issuer of the tokens of st.
func (s *Server) issuerOfStream(st *scimv1.SecurityEventStream) string {
	if st.Namespace == s.OperatorNamespace {
		return issuerOf(s.Issuer, "")
	}
	return issuerOf(s.Issuer, st.Namespace)
}

func (s *Server) metadata(w http.ResponseWriter, _ *http.Request, sc scope) {
	base := sc.issuer
	writeJSON(w, http.StatusOK, Metadata{
		SpecVersion: specVersion, Issuer: sc.issuer, JWKSURI: issuerOf(s.Issuer, "") + "/jwks.json",
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    base + "/ssf/streams",
		StatusEndpoint:           base + "/ssf/status",
		VerificationEndpoint:     base + "/ssf/verify",
		// A Kubernetes bearer token (a ServiceAccount's, an OIDC id token the API server
		// takes), checked by TokenReview: RFC 6750 bearer usage.
		AuthorizationSchemes: []AuthorizationScheme{{SpecURN: "urn:ietf:rfc:6750"}},
		DefaultSubjects:      "ALL",
	})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, s.Keys.JWKS())
}

// authorized authenticates the caller and checks what on securityeventstreams in the scope; it
// answers the request and returns nil when the caller may not.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, sc scope, verb, name, subresource string) user.Info {
	u := s.authenticated(w, r)
	if u == nil || !s.allowed(w, r, u, sc, verb, name, subresource) {
		return nil
	}
	return u
}

// authenticated is the caller; nil when the request was answered 401.
func (s *Server) authenticated(w http.ResponseWriter, r *http.Request) user.Info {
	u, code, msg := s.Auth.Authenticate(r)
	if code != 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scim-operator"`)
		writeError(w, code, "", msg)
		return nil
	}
	return u
}

// allowed checks what u may do; false when the request was answered 403 (or 503).
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, u user.Info, sc scope, verb, name, subresource string) bool {
	if code, msg := s.Auth.authorize(r.Context(), u, access{verb: verb, namespace: sc.namespace, name: name, subresource: subresource}); code != 0 {
		writeError(w, code, "", msg)
		return false
	}
	return true
}

// writeAllowed takes one of u's writes; false when the request was answered 429.
func (s *Server) writeAllowed(w http.ResponseWriter, u user.Info) bool {
	s.init()
	if !allow(s.writers, u.GetName(), s.WriterRate, DefaultWriterRate) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "", "too many writes by "+u.GetName())
		return false
	}
	return true
}

// bodyFor authenticates the caller, reads the body (whose stream_id the authorization needs)
// and checks verb on that stream; false when the request was answered.
func (s *Server) bodyFor(w http.ResponseWriter, r *http.Request, sc scope, verb string, v any, streamID func() string) bool {
	u := s.authenticated(w, r)
	if u == nil || !readJSON(w, r, v) {
		return false
	}
	id := streamID()
	if id == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "stream_id is required")
		return false
	}
	return s.allowed(w, r, u, sc, verb, id, "") && s.writeAllowed(w, u)
}

// config is st as the SSF API shows it.
func (s *Server) config(st *scimv1.SecurityEventStream) StreamConfig {
	c := StreamConfig{
		StreamID: st.Name, Issuer: s.issuerOfStream(st), Audience: st.Spec.Audience,
		EventsSupported: Supported, EventsRequested: st.Spec.EventsRequested, EventsDelivered: Delivered(st.Spec.EventsRequested),
		Description: st.Spec.Description, Delivery: &DeliveryConfig{Method: MethodPoll},
		MinVerificationInterval: int(MinVerificationInterval.Seconds()),
	}
	if st.Spec.Delivery.Method == scimv1.StreamPush {
		c.Delivery = &DeliveryConfig{Method: MethodPush, EndpointURL: st.Spec.Delivery.EndpointURL}
	} else {
		c.Delivery.EndpointURL = s.issuerOfStream(st) + "/ssf/poll/" + st.Name
	}
	return c
}

func (s *Server) streams(w http.ResponseWriter, r *http.Request, sc scope) {
	switch r.Method {
	case http.MethodGet:
		s.readStreams(w, r, sc)
	case http.MethodPost:
		s.createStream(w, r, sc)
	case http.MethodPatch, http.MethodPut:
		s.updateStream(w, r, sc)
	case http.MethodDelete:
		s.deleteStream(w, r, sc)
	default:
		w.Header().Set("Allow", "GET, POST, PATCH, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "", "method not allowed")
	}
}

func (s *Server) readStreams(w http.ResponseWriter, r *http.Request, sc scope) {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		if s.authorized(w, r, sc, "list", "", "") == nil {
			return
		}
		var list scimv1.SecurityEventStreamList
		if err := s.Client.List(r.Context(), &list, client.InNamespace(sc.namespace)); err != nil {
			writeError(w, http.StatusServiceUnavailable, "", "listing streams failed; try again")
			return
		}
		out := []StreamConfig{}
		for i := range list.Items {
			if list.Items[i].DeletionTimestamp.IsZero() {
				out = append(out, s.config(&list.Items[i]))
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, out)
		return
	}
	if s.authorized(w, r, sc, "get", id, "") == nil {
		return
	}
	st, ok := s.getStream(w, r, sc, id)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.config(st))
}

// getStream reads stream id of the scope from the API server (a stream just created is found);
// it answers 404 and returns false when there is none.
func (s *Server) getStream(w http.ResponseWriter, r *http.Request, sc scope, id string) (*scimv1.SecurityEventStream, bool) {
	st := &scimv1.SecurityEventStream{}
	if len(validation.IsDNS1123Subdomain(id)) > 0 {
		writeError(w, http.StatusNotFound, "", "no such stream")
		return nil, false
	}
	err := s.APIReader.Get(r.Context(), types.NamespacedName{Namespace: sc.namespace, Name: id}, st)
	switch {
	case apierrors.IsNotFound(err) || err == nil && !st.DeletionTimestamp.IsZero():
		writeError(w, http.StatusNotFound, "", "no such stream")
		return nil, false
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "", "reading the stream failed; try again")
		return nil, false
	}
	return st, true
}

// receiverSpec applies what a receiver may set (events_requested, description, delivery) of
// c to spec; replace clears what c leaves out (PUT).
func receiverSpec(spec *scimv1.SecurityEventStreamSpec, c StreamConfig, replace bool) error {
	if c.EventsRequested != nil || replace {
		if len(c.EventsRequested) > 32 {
			return errors.New("events_requested holds more than 32 event types")
		}
		spec.EventsRequested = nil
		for _, e := range c.EventsRequested {
			if len(e) > 256 {
				return errors.New("an events_requested entry is longer than 256 characters")
			}
			if !slices.Contains(spec.EventsRequested, e) { // at most 32: quadratic is 1,024 comparisons
				spec.EventsRequested = append(spec.EventsRequested, e)
			}
		}
	}
	if c.Description != "" || replace {
		spec.Description = truncate(c.Description, 512)
	}
	if c.Delivery != nil || replace {
		d := c.Delivery
		if d == nil {
			d = &DeliveryConfig{Method: MethodPoll}
		}
		switch d.Method {
		case MethodPoll, "":
			if d.EndpointURL != "" && spec.Delivery.Method != scimv1.StreamPoll {
				return errors.New("the poll endpoint_url is the transmitter's to choose; leave it out")
			}
			spec.Delivery = scimv1.StreamDeliverySpec{Method: scimv1.StreamPoll}
		case MethodPush:
			if _, err := secevent.ValidateReceiverURL(d.EndpointURL); err != nil {
				return fmt.Errorf("delivery.endpoint_url: %w", err)
			}
			if d.AuthorizationHeader != "" {
				return errors.New("delivery.authorization_header is not taken through the API (it would be kept in the " +
					"stream's spec, readable by whoever may read streams); declare the stream as a SecurityEventStream with " +
					"spec.delivery.authorizationSecretRef")
			}
			spec.Delivery = scimv1.StreamDeliverySpec{Method: scimv1.StreamPush, EndpointURL: d.EndpointURL}
		default:
			return fmt.Errorf("delivery method %q is not supported (%s, %s)", d.Method, MethodPush, MethodPoll)
		}
	}
	return nil
}

// fixedMatch refuses a transmitter-supplied property c holds that differs from st's.
func (s *Server) fixedMatch(st *scimv1.SecurityEventStream, c StreamConfig) error {
	cur := s.config(st)
	switch {
	case c.Issuer != "" && c.Issuer != cur.Issuer:
		return errors.New("iss is the transmitter's and cannot be changed")
	case c.Audience != nil && !slices.Equal(c.Audience, cur.Audience):
		return errors.New("aud cannot be changed")
	case c.EventsDelivered != nil && !slices.Equal(c.EventsDelivered, cur.EventsDelivered):
		return errors.New("events_delivered is the transmitter's; it must match the stream's before the update")
	case c.EventsSupported != nil && !slices.Equal(c.EventsSupported, cur.EventsSupported):
		return errors.New("events_supported is the transmitter's and cannot be changed")
	}
	return nil
}

func (s *Server) createStream(w http.ResponseWriter, r *http.Request, sc scope) {
	u := s.authorized(w, r, sc, "create", "", "")
	if u == nil || !s.writeAllowed(w, u) {
		return
	}
	var c StreamConfig
	if !readJSON(w, r, &c) {
		return
	}
	st := &scimv1.SecurityEventStream{
		ObjectMeta: metav1.ObjectMeta{Namespace: sc.namespace, GenerateName: "ssf-",
			Labels: map[string]string{LabelCreatedBy: "ssf-api"}},
		// The audience is the receiver, as the API server authenticated it.
		Spec: scimv1.SecurityEventStreamSpec{Audience: []string{truncate(u.GetName(), 512)}, State: scimv1.StreamEnabled,
			Delivery: scimv1.StreamDeliverySpec{Method: scimv1.StreamPoll}},
	}
	if c.Delivery == nil {
		c.Delivery = &DeliveryConfig{Method: MethodPoll}
	}
	if err := receiverSpec(&st.Spec, c, false); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err := s.Client.Create(r.Context(), st); err != nil {
		s.writeAPIError(w, r, "creating the stream", err)
		return
	}
	logf.FromContext(r.Context()).Info("Shared Signals stream created through the API", "stream", StreamKey(st), "receiver", u.GetName())
	writeJSON(w, http.StatusCreated, s.config(st))
}

func (s *Server) updateStream(w http.ResponseWriter, r *http.Request, sc scope) {
	var c StreamConfig
	if !s.bodyFor(w, r, sc, "update", &c, func() string { return c.StreamID }) {
		return
	}
	var out *scimv1.SecurityEventStream
	var bad error
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		st, ok := s.getStream(w, r, sc, c.StreamID)
		if !ok {
			return errAnswered
		}
		if bad = s.fixedMatch(st, c); bad != nil {
			return errAnswered
		}
		if bad = receiverSpec(&st.Spec, c, r.Method == http.MethodPut); bad != nil {
			return errAnswered
		}
		out = st
		return s.Client.Update(r.Context(), st)
	})
	switch {
	case bad != nil:
		writeError(w, http.StatusBadRequest, "invalid_request", bad.Error())
	case errors.Is(err, errAnswered):
	case err != nil:
		s.writeAPIError(w, r, "updating the stream", err)
	default:
		writeJSON(w, http.StatusOK, s.config(out))
	}
}

// errAnswered ends a retried write whose request was answered already.
var errAnswered = errors.New("answered")

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request, sc scope) {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		if s.authorized(w, r, sc, "delete", "", "") != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "the stream_id query parameter is required")
		}
		return
	}
	if u := s.authorized(w, r, sc, "delete", id, ""); u == nil || !s.writeAllowed(w, u) {
		return
	}
	if _, ok := s.getStream(w, r, sc, id); !ok {
		return
	}
	st := &scimv1.SecurityEventStream{ObjectMeta: metav1.ObjectMeta{Namespace: sc.namespace, Name: id}}
	if err := s.Client.Delete(r.Context(), st); err != nil && !apierrors.IsNotFound(err) {
		s.writeAPIError(w, r, "deleting the stream", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, sc scope) {
	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get("stream_id")
		if id == "" {
			if s.authorized(w, r, sc, "get", "", "") != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", "the stream_id query parameter is required")
			}
			return
		}
		if s.authorized(w, r, sc, "get", id, "") == nil {
			return
		}
		st, ok := s.getStream(w, r, sc, id)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, StreamStatus{StreamID: st.Name, Status: string(StateOf(st)), Reason: st.Spec.StateReason})
	case http.MethodPost:
		var req StreamStatus
		if !s.bodyFor(w, r, sc, "update", &req, func() string { return req.StreamID }) {
			return
		}
		switch scimv1.StreamState(req.Status) {
		case scimv1.StreamEnabled, scimv1.StreamPaused, scimv1.StreamDisabled:
		default:
			writeError(w, http.StatusBadRequest, "invalid_request", "status must be enabled, paused or disabled")
			return
		}
		var out *scimv1.SecurityEventStream
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			st, ok := s.getStream(w, r, sc, req.StreamID)
			if !ok {
				return errAnswered
			}
			st.Spec.State, st.Spec.StateReason = scimv1.StreamState(req.Status), truncate(req.Reason, 512)
			out = st
			return s.Client.Update(r.Context(), st)
		})
		switch {
		case errors.Is(err, errAnswered):
		case err != nil:
			s.writeAPIError(w, r, "updating the stream's status", err)
		default:
			writeJSON(w, http.StatusOK, StreamStatus{StreamID: out.Name, Status: string(StateOf(out)), Reason: out.Spec.StateReason})
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "", "method not allowed")
	}
}

// StateOf is st's SSF status, enabled when unset.
func StateOf(st *scimv1.SecurityEventStream) scimv1.StreamState {
	if st.Spec.State == "" {
		return scimv1.StreamEnabled
	}
	return st.Spec.State
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, sc scope) {
	var req VerificationRequest
	if !s.bodyFor(w, r, sc, "update", &req, func() string { return req.StreamID }) {
		return
	}
	if len(req.State) > 256 {
		writeError(w, http.StatusBadRequest, "invalid_request", "state is longer than 256 characters")
		return
	}
	tooSoon, uid := false, ""
	s.init()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		st, ok := s.getStream(w, r, sc, req.StreamID)
		if !ok {
			return errAnswered
		}
		now := status.Clock(s.Clock).Now()
		last, seen := s.verified.Get(string(st.UID))
		if v := st.Status.Verification; v != nil && now.Sub(v.RequestedAt.Time) < MinVerificationInterval ||
			seen && now.Sub(last.(time.Time)) < MinVerificationInterval {
			tooSoon = true
			return errAnswered
		}
		uid = string(st.UID)
		// One verification waits at a time: a new request replaces the one not yet taken.
		st.Status.Verification = &scimv1.StreamVerification{JTI: secevent.NewJTI(), State: req.State,
			RequestedAt: metav1.NewTime(status.Clock(s.Clock).Now())}
		return s.Client.Status().Update(r.Context(), st)
	})
	switch {
	case tooSoon:
		w.Header().Set("Retry-After", strconv.Itoa(int(MinVerificationInterval.Seconds())))
		writeError(w, http.StatusTooManyRequests, "", fmt.Sprintf("at most one verification per %s while one waits", MinVerificationInterval))
	case errors.Is(err, errAnswered):
	case err != nil:
		s.writeAPIError(w, r, "recording the verification", err)
	default:
		// Counted once written (a conflict retried above is not a second request).
		s.verified.Add(uid, status.Clock(s.Clock).Now())
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) poll(w http.ResponseWriter, r *http.Request, sc scope) {
	id := r.PathValue("stream")
	u := s.authorized(w, r, sc, "update", id, "poll")
	if u == nil {
		return
	}
	var req PollRequest
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.Ack)+len(req.SetErrs) > 0 && !s.writeAllowed(w, u) { // acknowledgements are writes
		return
	}
	if len(req.Ack)+len(req.SetErrs) > maxAcks {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("at most %d acknowledgements and errors in one poll", maxAcks))
		return
	}
	st, ok := s.getStream(w, r, sc, id)
	if !ok {
		return
	}
	if st.Spec.Delivery.Method != scimv1.StreamPoll {
		writeError(w, http.StatusBadRequest, "invalid_request", "the stream is delivered by push, not poll")
		return
	}
	if err := s.settle(r.Context(), st, req); err != nil {
		logf.FromContext(r.Context()).Error(err, "Recording a poll's acknowledgements", "stream", StreamKey(st))
		writeError(w, http.StatusServiceUnavailable, "", "recording the acknowledgements failed; send them again")
		return
	}
	max := DefaultMaxEvents
	if req.MaxEvents != nil {
		max = min(max, *req.MaxEvents)
	}
	resp := PollResponse{Sets: map[string]string{}}
	if max <= 0 {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	deadline := time.Now().Add(s.pollWait())
	for {
		sets, more, err := s.offer(r.Context(), st, max)
		if err != nil {
			logf.FromContext(r.Context()).Error(err, "Building a poll's tokens", "stream", StreamKey(st))
			writeError(w, http.StatusServiceUnavailable, "", "the tokens could not be built; poll again")
			return
		}
		if len(sets) > 0 || req.ReturnImmediately || time.Now().After(deadline) {
			resp.Sets, resp.MoreAvailable = sets, more
			writeJSON(w, http.StatusOK, resp)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(pollInterval):
		}
		// The stream may have been paused, verified or deleted meanwhile.
		if err := s.Client.Get(r.Context(), client.ObjectKeyFromObject(st), st); err != nil {
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
}

// offer builds up to max of st's tokens waiting for the receiver: the verification event
// first, then the revocations oldest first. A stream not enabled is offered none.
func (s *Server) offer(ctx context.Context, st *scimv1.SecurityEventStream, max int) (map[string]string, bool, error) {
	sets := map[string]string{}
	if StateOf(st) != scimv1.StreamEnabled {
		return sets, false, nil
	}
	signer := s.Keys.Signer()
	if signer == nil {
		return nil, false, errors.New("no signing key loaded")
	}
	now := status.Clock(s.Clock).Now()
	iss := s.issuerOfStream(st)
	if st.Status.Verification != nil {
		tok, err := s.sign(signer, verificationClaims(st, iss, now))
		if err != nil {
			return nil, false, err
		}
		sets[st.Status.Verification.JTI] = tok
	}
	var list scimv1.ServiceIdentityList
	// Read only, never changed: the cache's objects, not copies of each.
	if err := s.Client.List(ctx, &list, client.MatchingFields{IndexPendingStream: StreamKey(st)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, false, err
	}
	var pending []pendingToken
	for i := range list.Items {
		pending = append(pending, pendingOf(&list.Items[i], st)...)
	}
	sort.SliceStable(pending, func(i, j int) bool {
		a, b := pending[i].evidence.ConfirmedAt, pending[j].evidence.ConfirmedAt
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return pending[i].jti < pending[j].jti
	})
	more := false
	for _, p := range pending {
		if len(sets) >= max {
			more = true
			break
		}
		tok, err := s.sign(signer, claimsOf(p, st, iss, s.ClusterID, now))
		if err != nil {
			return nil, false, err
		}
		sets[p.jti] = tok
	}
	return sets, more, nil
}

// Token is one of a stream's Pending tokens on an identity, signed.
type Token struct {
	JTI, Event, SET string
	// Mark is the token's entry on the identity's status (to record its outcome on).
	Mark *scimv1.StreamEvent
}

// Tokens signs st's Pending tokens on si (push delivery).
func (s *Server) Tokens(si *scimv1.ServiceIdentity, st *scimv1.SecurityEventStream) ([]Token, error) {
	signer := s.Keys.Signer()
	if signer == nil {
		return nil, errors.New("no signing key loaded")
	}
	now := status.Clock(s.Clock).Now()
	var out []Token
	for _, p := range pendingOf(si, st) {
		tok, err := s.sign(signer, claimsOf(p, st, s.issuerOfStream(st), s.ClusterID, now))
		if err != nil {
			return nil, err
		}
		out = append(out, Token{JTI: p.jti, Event: p.event, SET: tok, Mark: p.mark})
	}
	return out, nil
}

// VerificationToken signs st's waiting verification event (push delivery).
func (s *Server) VerificationToken(st *scimv1.SecurityEventStream) (string, error) {
	signer := s.Keys.Signer()
	if signer == nil {
		return "", errors.New("no signing key loaded")
	}
	return signer.SignClaims(verificationClaims(st, s.issuerOfStream(st), status.Clock(s.Clock).Now()))
}

// settle records a poll's acknowledgements (Delivered) and errors (Refused) on the outbox
// before anything is offered: an acknowledged token is never offered again, by any replica,
// after any restart. A jti not pending for st is ignored (acknowledged before, or not st's).
func (s *Server) settle(ctx context.Context, st *scimv1.SecurityEventStream, req PollRequest) error {
	outcome := map[string]scimv1.SecurityEventDelivery{}
	for _, jti := range req.Ack {
		outcome[jti] = scimv1.SecurityEventDelivered
	}
	logged := false
	for jti, e := range req.SetErrs {
		outcome[jti] = scimv1.SecurityEventRefused
		if !logged { // one line per poll, whatever the receiver sends
			logged = true
			logf.FromContext(ctx).Info("Shared Signals receiver refused tokens", "stream", StreamKey(st), "count", len(req.SetErrs),
				"first", truncate(jti, 64), "err", truncate(e.Err, 64), "description", truncate(e.Description, 256))
		}
	}
	if len(outcome) == 0 {
		return nil
	}
	if v := st.Status.Verification; v != nil {
		if _, ok := outcome[v.JTI]; ok {
			delete(outcome, v.JTI)
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := s.APIReader.Get(ctx, client.ObjectKeyFromObject(st), st); err != nil {
					return err
				}
				if st.Status.Verification == nil || st.Status.Verification.JTI != v.JTI {
					return nil
				}
				st.Status.Verification = nil
				return s.Client.Status().Update(ctx, st)
			}); err != nil {
				return fmt.Errorf("clearing the verification of stream %s: %w", StreamKey(st), err)
			}
		}
	}
	// The identities holding them, by the index of pending jtis.
	holders := map[types.NamespacedName]bool{}
	for jti := range outcome {
		var list scimv1.ServiceIdentityList
		if err := s.Client.List(ctx, &list, client.MatchingFields{IndexPendingJTI: jti}, client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
		for i := range list.Items {
			// Only an identity holding that jti Pending for this very stream is read and
			// written (another stream's jti costs nothing).
			for _, p := range pendingOf(&list.Items[i], st) {
				if p.jti == jti {
					holders[client.ObjectKeyFromObject(&list.Items[i])] = true
				}
			}
		}
	}
	now := metav1.NewTime(status.Clock(s.Clock).Now())
	for nn := range holders {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			si := &scimv1.ServiceIdentity{}
			if err := s.APIReader.Get(ctx, nn, si); err != nil {
				return client.IgnoreNotFound(err)
			}
			base := si.DeepCopy()
			changed := false
			for _, p := range pendingOf(si, st) {
				d, ok := outcome[p.jti]
				if !ok {
					continue
				}
				p.mark.Delivery, p.mark.At, changed = d, &now, true
			}
			if !changed {
				return nil
			}
			return status.Patch(ctx, s.Client, si, base, true)
		})
		if err != nil {
			return fmt.Errorf("recording acknowledgements on %s: %w", nn, err)
		}
	}
	return nil
}

// LabelCreatedBy marks the streams a receiver created through the SSF API.
const LabelCreatedBy = "scim.nhi.dev/created-by"

func (s *Server) writeAPIError(w http.ResponseWriter, r *http.Request, what string, err error) {
	switch {
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		writeError(w, http.StatusBadRequest, "invalid_request", truncate(err.Error(), 1024))
	case apierrors.IsNotFound(err):
		writeError(w, http.StatusNotFound, "", "no such stream")
	case apierrors.IsForbidden(err):
		// The operator's own RBAC, or an admission policy, refused it.
		writeError(w, http.StatusForbidden, "", truncate(err.Error(), 1024))
	default:
		logf.FromContext(r.Context()).Error(err, "Shared Signals API request failed", "what", what)
		writeError(w, http.StatusServiceUnavailable, "", what+" failed; try again")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, description string) {
	writeJSON(w, code, ErrorResponse{Err: errCode, Description: description})
}

// readJSON decodes a bounded JSON body into v; it answers 400 and returns false when it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large")
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body is not the JSON object expected: "+truncate(err.Error(), 256))
		return false
	}
	return true
}

func truncate(s string, n int) string { return status.Truncate(s, n) }
