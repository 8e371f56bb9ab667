// Package secevent builds, signs and pushes Security Event Tokens: the operator's signed
// statement to a receiver it is configured with that an account was disabled or removed.
//
// A SET (RFC 8417) is a JWS-signed JWT with header typ "secevent+jwt", the claims iss, iat,
// jti, aud, sub_id (a subject identifier, RFC 9493, as the OpenID Shared Signals Framework puts
// it at the top level) and events with exactly one event: one of the OpenID RISC event types
// account-disabled or account-purged. It is delivered by HTTP POST (RFC 8935): the receiver
// answers 202 when it accepted the SET, 400 with {"err", "description"} when it never will.
//
// Signer signs; Transmitter delivers one SET (Send: one attempt, Deliver: with retries);
// Publisher queues events and delivers them in the background, a controller-runtime Runnable.
package secevent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// EventType is a RISC event type URI.
type EventType string

const (
	// AccountDisabled: the account identified by the subject has been disabled (it may be
	// enabled again). OpenID RISC 1.0, section 2.3.
	AccountDisabled EventType = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	// AccountPurged: the account identified by the subject has been permanently deleted.
	// OpenID RISC 1.0, section 2.2.
	AccountPurged EventType = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
)

// Short is the event type's last path segment ("account-disabled"), for logs and metrics.
func (t EventType) Short() string { return string(t[strings.LastIndexByte(string(t), '/')+1:]) }

// DisabledReason is the optional reason of an account-disabled event. RISC defines two values;
// an account retired with its workload has neither, and is sent without a reason.
type DisabledReason string

const (
	// ReasonHijacking: the account was disabled because it was taken over.
	ReasonHijacking DisabledReason = "hijacking"
	// ReasonBulkAccount: the account was disabled as one of a bulk of accounts (spam, abuse).
	ReasonBulkAccount DisabledReason = "bulk-account"
)

// Event is what happened to one account. It becomes the events and sub_id claims of one SET.
type Event struct {
	// Type is AccountDisabled or AccountPurged.
	Type EventType
	// Subject identifies the account (sub_id).
	Subject Subject
	// Reason is only for AccountDisabled; empty means none.
	Reason DisabledReason
	// Time is when the event happened (the target confirmed it): the toe claim of RFC 8417.
	// Zero leaves toe out.
	Time time.Time
	// Txn is an optional transaction id (RFC 8417 txn) shared by the SETs one change caused,
	// e.g. the account-disabled and account-purged of one deprovisioning on every target.
	Txn string
}

// Validate reports what makes the event unfit for a SET.
func (e Event) Validate() error {
	switch e.Type {
	case AccountDisabled:
		switch e.Reason {
		case "", ReasonHijacking, ReasonBulkAccount:
		default:
			return fmt.Errorf("account-disabled reason %q is not one RISC defines (hijacking, bulk-account)", e.Reason)
		}
	case AccountPurged:
		if e.Reason != "" {
			return errors.New("account-purged has no reason")
		}
	case "":
		return errors.New("event type is empty")
	default:
		return fmt.Errorf("event type %q is not supported (account-disabled, account-purged)", string(e.Type))
	}
	if err := e.Subject.Validate(); err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	if len(e.Txn) > maxClaimLen {
		return fmt.Errorf("txn is longer than %d bytes", maxClaimLen)
	}
	return nil
}

// maxClaimLen bounds each string the caller puts in a SET.
const maxClaimLen = 2048

// Subject is a subject identifier (RFC 9493): a format and that format's members. Build one
// with SCIMAccount, Opaque, URI, IssSub, Email or Account.
type Subject struct {
	format  string
	members [][2]string // in order: what MarshalJSON writes after format
}

// SCIMAccount identifies an account by its SCIM resource location (RFC 7644 meta.location):
// <endpoint>/Users/<id>, format "uri". The location names both the service provider and the
// account, so a receiver watching several targets can tell them apart.
// The endpoint's query, fragment and user information (a token some providers take there)
// never reach the receiver.
func SCIMAccount(endpoint, id string) Subject { return SCIMResource(endpoint, "Users", id) }

// SCIMResource is SCIMAccount for an account made as another resource type (an endpoint
// such as "Agents").
func SCIMResource(endpoint, resourceEndpoint, id string) Subject {
	if u, err := url.Parse(endpoint); err == nil {
		u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment, u.User = "", false, "", "", nil
		endpoint = u.String()
	} else {
		endpoint, _, _ = strings.Cut(endpoint, "?")
	}
	return URI(strings.TrimRight(endpoint, "/") + "/" + strings.Trim(resourceEndpoint, "/") + "/" + url.PathEscape(id))
}

// Opaque identifies the subject by an id only the transmitter and receiver understand
// (format "opaque"), e.g. the account's externalId.
func Opaque(id string) Subject { return Subject{format: "opaque", members: [][2]string{{"id", id}}} }

// URI identifies the subject by a URI (format "uri").
func URI(uri string) Subject { return Subject{format: "uri", members: [][2]string{{"uri", uri}}} }

// IssSub identifies the subject by an issuer and a subject unique within it (format "iss_sub").
func IssSub(iss, sub string) Subject {
	return Subject{format: "iss_sub", members: [][2]string{{"iss", iss}, {"sub", sub}}}
}

// Email identifies the subject by an e-mail address (format "email").
func Email(email string) Subject {
	return Subject{format: "email", members: [][2]string{{"email", email}}}
}

// Account identifies the subject by an acct: URI (format "account", RFC 7565).
func Account(acctURI string) Subject {
	return Subject{format: "account", members: [][2]string{{"uri", acctURI}}}
}

// Format is the subject identifier format ("uri", "opaque", ...).
func (s Subject) Format() string { return s.format }

// Member returns the value of one of the subject's members ("id", "uri", ...).
func (s Subject) Member(name string) string {
	for _, m := range s.members {
		if m[0] == name {
			return m[1]
		}
	}
	return ""
}

// Validate reports an empty subject or an empty or malformed member.
func (s Subject) Validate() error {
	if s.format == "" {
		return errors.New("no subject identifier")
	}
	for _, m := range s.members {
		if m[1] == "" {
			return fmt.Errorf("%s subject: %s is empty", s.format, m[0])
		}
		if len(m[1]) > maxClaimLen {
			return fmt.Errorf("%s subject: %s is longer than %d bytes", s.format, m[0], maxClaimLen)
		}
	}
	switch s.format {
	case "uri":
		u, err := url.Parse(s.Member("uri"))
		if err != nil || u.Scheme == "" {
			return errors.New("uri subject: not an absolute URI")
		}
	case "account":
		if !strings.HasPrefix(s.Member("uri"), "acct:") {
			return errors.New("account subject: not an acct: URI")
		}
	case "email":
		if !strings.Contains(s.Member("email"), "@") {
			return errors.New("email subject: not an e-mail address")
		}
	}
	return nil
}

// MarshalJSON writes {"format": ..., members...}.
func (s Subject) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(s.members)+1)
	m["format"] = s.format
	for _, kv := range s.members {
		m[kv[0]] = kv[1]
	}
	return json.Marshal(m)
}

// Claims is the payload of one SET.
type Claims struct {
	Issuer   string `json:"iss"`
	IssuedAt int64  `json:"iat"`
	ID       string `json:"jti"`
	Audience string `json:"aud"`
	// TimeOfEvent is RFC 8417's toe, seconds since the epoch; 0 leaves it out.
	TimeOfEvent int64                      `json:"toe,omitempty"`
	Txn         string                     `json:"txn,omitempty"`
	Subject     Subject                    `json:"sub_id"`
	Events      map[EventType]eventPayload `json:"events"`
}

// eventPayload is the event's members: {} or {"reason": ...}.
type eventPayload struct {
	Reason DisabledReason `json:"reason,omitempty"`
}

// NewClaims builds the claims of a SET for ev, issued by iss for aud at now, with a fresh jti.
func NewClaims(iss, aud string, ev Event, now time.Time) (Claims, error) {
	if iss == "" || aud == "" {
		return Claims{}, errors.New("issuer and audience are required")
	}
	if err := ev.Validate(); err != nil {
		return Claims{}, err
	}
	c := Claims{
		Issuer:   iss,
		IssuedAt: now.Unix(),
		ID:       NewJTI(),
		Audience: aud,
		Txn:      ev.Txn,
		Subject:  ev.Subject,
		Events:   map[EventType]eventPayload{ev.Type: {Reason: ev.Reason}},
	}
	if !ev.Time.IsZero() {
		c.TimeOfEvent = ev.Time.Unix()
	}
	return c, nil
}

// NewJTI returns a fresh SET id: 128 random bits, hex.
func NewJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return hex.EncodeToString(b)
}

// Type is the claims' single event type.
func (c Claims) Type() EventType {
	for t := range c.Events {
		return t
	}
	return ""
}
