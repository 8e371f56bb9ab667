// Package ssf is the operator's OpenID Shared Signals Framework 1.0 transmitter: the
// configuration metadata (/.well-known/ssf-configuration), the JWK Set its tokens are signed
// with, stream management (create, read, update, replace, delete; status; verification) and
// poll delivery (RFC 8936). Streams are SecurityEventStream objects; the tokens a stream is
// offered are recorded on the identities' status first (the outbox), so none is lost across a
// restart or a leader change, and none acknowledged is offered again.
//
// Who may do what is the API server's decision: a request's bearer token goes through
// TokenReview and the verb through SubjectAccessReview, on securityeventstreams in the
// namespace the endpoint serves (the operator's own namespace for the cluster-wide issuer).
package ssf

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Delivery method URNs (SSF 1.0 section 6.1.1).
const (
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"
)

// SSF event types the transmitter sends about its streams.
const (
	EventVerification  = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	EventStreamUpdated = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// Event types about accounts: OpenID RISC 1.0 and SCIM Events (RFC 9967).
const (
	EventAccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	EventAccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	EventProvDeactivate  = "urn:ietf:params:scim:event:prov:deactivate"
	EventProvDelete      = "urn:ietf:params:scim:event:prov:delete"
)

// Supported is every event type a stream can be delivered, in the order they are listed.
var Supported = []string{EventAccountDisabled, EventAccountPurged, EventProvDeactivate, EventProvDelete, EventVerification}

// Delivered is what a stream that requested requested is delivered: the supported ones, in
// Supported's order. Verification events are always delivered (SSF 1.0 section 8.1.4).
func Delivered(requested []string) []string {
	var out []string
	for _, t := range Supported {
		if t == EventVerification || slices.Contains(requested, t) {
			out = append(out, t)
		}
	}
	return out
}

// Metadata is the Transmitter Configuration Metadata (SSF 1.0 section 7.1).
type Metadata struct {
	SpecVersion              string                `json:"spec_version"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint"`
	StatusEndpoint           string                `json:"status_endpoint"`
	VerificationEndpoint     string                `json:"verification_endpoint"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes"`
	DefaultSubjects          string                `json:"default_subjects"`
}

// AuthorizationScheme names how a receiver authorizes itself (SSF 1.0 section 7.1.1).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// StreamConfig is a stream's configuration as the SSF API reads and writes it (section 8.1.1).
type StreamConfig struct {
	StreamID        string          `json:"stream_id,omitempty"`
	Issuer          string          `json:"iss,omitempty"`
	Audience        Audience        `json:"aud,omitempty"`
	EventsSupported []string        `json:"events_supported,omitempty"`
	EventsRequested []string        `json:"events_requested,omitempty"`
	EventsDelivered []string        `json:"events_delivered,omitempty"`
	Delivery        *DeliveryConfig `json:"delivery,omitempty"`
	Description     string          `json:"description,omitempty"`
	// MinVerificationInterval is the least number of seconds between verification requests.
	MinVerificationInterval int `json:"min_verification_interval,omitempty"`
}

// DeliveryConfig is a stream's delivery method and endpoint.
type DeliveryConfig struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// Audience is the aud of a stream: one string, or an array of them.
type Audience []string

// MarshalJSON writes one audience as a string, several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON reads a string or an array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud must be a string or an array of strings")
	}
	*a = many
	return nil
}

// StreamStatus is a stream's status as the SSF status endpoint reads and writes it (8.1.2).
type StreamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// VerificationRequest asks for a verification event (section 8.1.4.2).
type VerificationRequest struct {
	StreamID string `json:"stream_id"`
	State    string `json:"state,omitempty"`
}

// PollRequest is an RFC 8936 poll: acknowledgements, errors, and how many tokens to return.
type PollRequest struct {
	MaxEvents         *int              `json:"maxEvents,omitempty"`
	ReturnImmediately bool              `json:"returnImmediately,omitempty"`
	Ack               []string          `json:"ack,omitempty"`
	SetErrs           map[string]SetErr `json:"setErrs,omitempty"`
}

// SetErr is a receiver's error for one token it could not accept (RFC 8936 section 2.4).
type SetErr struct {
	Err         string `json:"err"`
	Description string `json:"description,omitempty"`
}

// PollResponse is an RFC 8936 answer: the tokens by jti, and whether more are waiting.
type PollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}

// ErrorResponse is the body of an error answer.
type ErrorResponse struct {
	Err         string `json:"err,omitempty"`
	Description string `json:"description"`
}

// scopePath is the path prefix of a namespace's endpoints ("" for the cluster's).
func scopePath(namespace string) string {
	if namespace == "" {
		return ""
	}
	return "/namespaces/" + namespace
}

// issuerOf is the issuer of a scope: base for the cluster, base/namespaces/<ns> for one
// namespace. The well-known URL of an issuer with a path inserts the path after
// /.well-known/ssf-configuration (SSF 1.0 section 7.2, as RFC 8414).
func issuerOf(base, namespace string) string {
	return strings.TrimRight(base, "/") + scopePath(namespace)
}
