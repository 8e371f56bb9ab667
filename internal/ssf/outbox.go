package ssf

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// Field indexes on ServiceIdentities the transmitter and the stream controller look tokens up
// by; RegisterIndexes adds them to the manager's cache.
const (
	// IndexPendingStream: the namespace/name of every stream holding a Pending token of the
	// identity.
	IndexPendingStream = "ssf.pendingStream"
	// IndexPendingJTI: the jti of every Pending stream token of the identity.
	IndexPendingJTI = "ssf.pendingJTI"
)

// StreamKey is how a stream is named on the identities' outbox: namespace/name.
func StreamKey(s *scimv1.SecurityEventStream) string { return s.Namespace + "/" + s.Name }

// JTI is the jti of the token of one event type that a revocation's evidence (whose own jti is
// evidenceJTI) gives one stream: derived, so every offer of it, by any replica and after any
// restart, carries the same jti, and two streams never share one.
func JTI(evidenceJTI, streamUID, event string) string {
	sum := sha256.Sum256([]byte(evidenceJTI + "\x00" + streamUID + "\x00" + event))
	return hex.EncodeToString(sum[:16])
}

// Events are the event types of stream tokens a revocation confirmed with result gives, of
// those delivered: the account deactivated (RISC account-disabled, SCIM prov:deactivate) or
// gone (RISC account-purged, SCIM prov:delete).
func Events(result scimv1.RevocationResult, delivered []string) []string {
	var of []string
	switch result {
	case scimv1.RevocationInactive:
		of = []string{EventAccountDisabled, EventProvDeactivate}
	case scimv1.RevocationNotFound:
		of = []string{EventAccountPurged, EventProvDelete}
	}
	var out []string
	for _, t := range of {
		if slices.Contains(delivered, t) {
			out = append(out, t)
		}
	}
	return out
}

func pendingStreams(o client.Object) []string {
	var out []string
	eachPending(o, func(_ *scimv1.RevocationEvidence, m *scimv1.StreamEvent) {
		if !slices.Contains(out, m.Stream) {
			out = append(out, m.Stream)
		}
	})
	return out
}

func pendingJTIs(o client.Object) []string {
	var out []string
	eachPending(o, func(ev *scimv1.RevocationEvidence, m *scimv1.StreamEvent) {
		out = append(out, JTI(ev.SecurityEvent, m.UID, m.Event))
	})
	return out
}

// eachPending calls f with every Pending stream token on o's status.
func eachPending(o client.Object, f func(*scimv1.RevocationEvidence, *scimv1.StreamEvent)) {
	si, ok := o.(*scimv1.ServiceIdentity)
	if !ok {
		return
	}
	for i := range si.Status.Targets {
		ev := si.Status.Targets[i].Revocation
		if ev == nil || ev.SecurityEvent == "" {
			continue
		}
		for j := range ev.Streams {
			if ev.Streams[j].Delivery == scimv1.SecurityEventPending {
				f(ev, &ev.Streams[j])
			}
		}
	}
}

// pendingToken is one Pending token of a stream, found on an identity.
type pendingToken struct {
	jti      string
	identity *scimv1.ServiceIdentity
	evidence *scimv1.RevocationEvidence
	event    string
	// mark is the token's entry on the identity's status (to record its outcome on).
	mark *scimv1.StreamEvent
}

// pendingOf lists the Pending tokens of stream on si.
func pendingOf(si *scimv1.ServiceIdentity, stream *scimv1.SecurityEventStream) []pendingToken {
	var out []pendingToken
	key, uid := StreamKey(stream), string(stream.UID)
	eachPending(si, func(ev *scimv1.RevocationEvidence, m *scimv1.StreamEvent) {
		if m.Stream == key && m.UID == uid {
			out = append(out, pendingToken{jti: JTI(ev.SecurityEvent, uid, m.Event), identity: si, evidence: ev, event: m.Event, mark: m})
		}
	})
	return out
}

// scimEventPrefix begins every SCIM event type (RFC 9967).
const scimEventPrefix = "urn:ietf:params:scim:event:"

// setClaims are a stream token's claims (RFC 8417 as the SSF profiles it: no sub, no exp,
// sub_id at the top level, one event).
type setClaims struct {
	Issuer      string                    `json:"iss"`
	IssuedAt    int64                     `json:"iat"`
	ID          string                    `json:"jti"`
	Audience    Audience                  `json:"aud"`
	TimeOfEvent int64                     `json:"toe,omitempty"`
	Txn         string                    `json:"txn,omitempty"`
	Subject     map[string]string         `json:"sub_id"`
	Events      map[string]map[string]any `json:"events"`
}

// claimsOf is the token of p for stream, issued by iss at now; clusterID makes the externalId
// of the account (account.ExternalID).
func claimsOf(p pendingToken, stream *scimv1.SecurityEventStream, iss, clusterID string, now time.Time) setClaims {
	c := setClaims{
		Issuer: iss, IssuedAt: now.Unix(), ID: p.jti, Audience: stream.Spec.Audience,
		TimeOfEvent: p.evidence.ConfirmedAt.Unix(), Txn: string(p.identity.UID),
		Subject: map[string]string{"format": "uri", "uri": p.evidence.SecurityEventSubject},
		Events:  map[string]map[string]any{p.event: {}},
	}
	if strings.HasPrefix(p.event, scimEventPrefix) {
		// RFC 9967's subject: the resource's path relative to the service's base URI, and
		// the externalId the operator gave it.
		c.Subject = map[string]string{"format": "scim", "uri": scimPath(p.evidence.SecurityEventSubject)}
		if clusterID != "" {
			c.Subject["externalId"] = clusterID + "/" + p.identity.Namespace + "/" + p.identity.Name
		}
	}
	return c
}

// scimPath is "/<ResourceType endpoint>/<id>" of an account's location.
func scimPath(location string) string {
	u, err := url.Parse(location)
	if err != nil {
		return location
	}
	parts := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	if len(parts) < 2 {
		return u.EscapedPath()
	}
	return "/" + parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

// verificationClaims is the verification event of stream (SSF 1.0 section 8.1.4).
func verificationClaims(stream *scimv1.SecurityEventStream, iss string, now time.Time) setClaims {
	v := stream.Status.Verification
	payload := map[string]any{}
	if v.State != "" {
		payload["state"] = v.State
	}
	return setClaims{
		Issuer: iss, IssuedAt: now.Unix(), ID: v.JTI, Audience: stream.Spec.Audience,
		Subject: map[string]string{"format": "opaque", "id": stream.Name},
		Events:  map[string]map[string]any{EventVerification: payload},
	}
}
