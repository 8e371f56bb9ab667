package plugin

import (
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// identity is a ServiceIdentity as the plugin reads it (through the dynamic client, so the
// plugin needs no scheme and reads what the API server serves).
type identity struct {
	scimv1.ServiceIdentity
}

// decodeIdentity reads an object of the API server into an identity.
func decodeIdentity(u *unstructured.Unstructured) (*identity, error) {
	raw, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	id := &identity{}
	if err := json.Unmarshal(raw, &id.ServiceIdentity); err != nil {
		return nil, fmt.Errorf("decoding ServiceIdentity %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return id, nil
}

// ownerState is status.owner.state: what the owner directory says of spec.owner ("" when no
// directory checks it).
func (id *identity) ownerState() string {
	if id.Status.Owner == nil {
		return ""
	}
	return string(id.Status.Owner.State)
}

func (id *identity) lastReviewedAt() *metav1.Time {
	if id.Status.Review == nil {
		return nil
	}
	return id.Status.Review.LastReviewedAt
}

func (id *identity) nextReviewAt() *metav1.Time {
	if id.Status.Review == nil || id.Status.Review.NextReviewAt.IsZero() {
		return nil
	}
	return &id.Status.Review.NextReviewAt
}

// reviewEvery is the review interval in effect (status.review.every, which a target's
// default may shorten), else spec.review.every.
func (id *identity) reviewEvery() string {
	if r := id.Status.Review; r != nil && r.Every != "" {
		return string(r.Every)
	}
	if id.Spec.Review != nil {
		return string(id.Spec.Review.Every)
	}
	return ""
}

// expiresAt is status.expiresAt (spec.expiresAt or spec.ttl resolved by the operator), else
// spec.expiresAt as written.
func (id *identity) expiresAt() *time.Time {
	if t := id.Status.ExpiresAt; t != nil {
		v := t.UTC()
		return &v
	}
	if id.Spec.ExpiresAt != nil {
		if v, err := id.Spec.ExpiresAt.Parse(); err == nil {
			v = v.UTC()
			return &v
		}
	}
	return nil
}

// targetRow is one target of an identity: the reference in spec joined with its status entry.
type targetRow struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Active   *bool  `json:"active,omitempty"`
	ID       string `json:"id,omitempty"`
	UserName string `json:"userName,omitempty"`
	Message  string `json:"message,omitempty"`
	// LastSyncTime and Revocation are shown by why; inventory's JSON carries them too.
	LastSyncTime *metav1.Time               `json:"lastSyncTime,omitempty"`
	Revocation   *scimv1.RevocationEvidence `json:"revocation,omitempty"`
	// AccountOff is true only when the target itself showed the account unusable (read back
	// gone or inactive after a revocation, or active=false while suspended); Evidence says
	// what it showed, or why the account counts as still active. Both come from
	// IdentityTargetStatus.AccountOff, the rule the operator's Events use too.
	AccountOff bool   `json:"accountOff"`
	Evidence   string `json:"evidence"`
	// InSpec is false for a status entry whose target was removed from spec.targetRefs.
	InSpec bool `json:"-"`
}

// targets lists spec.targetRefs in order with their status (state "Pending" when the operator
// has not reported on it), then status entries of targets no longer in spec.
func (id *identity) targets() []targetRow {
	var rows []targetRow
	seen := map[string]bool{}
	find := func(kind, name string) *scimv1.IdentityTargetStatus {
		for i := range id.Status.Targets {
			if t := &id.Status.Targets[i]; t.Kind == kind && t.Name == name {
				return t
			}
		}
		return nil
	}
	row := func(kind, name string, st *scimv1.IdentityTargetStatus, inSpec bool) targetRow {
		r := targetRow{Kind: kind, Name: name, State: string(scimv1.TargetStatePending), InSpec: inSpec}
		r.AccountOff, r.Evidence = st.AccountOff()
		if st != nil {
			if st.State != "" {
				r.State = string(st.State)
			}
			r.Active, r.ID, r.UserName, r.Message, r.LastSyncTime = st.Active, st.ID, st.UserName, st.Message, st.LastSyncTime
			r.Revocation = st.Revocation
		}
		return r
	}
	for _, ref := range id.Spec.TargetRefs {
		kind := ref.TargetKind()
		if seen[kind+"/"+ref.Name] {
			continue
		}
		seen[kind+"/"+ref.Name] = true
		rows = append(rows, row(kind, ref.Name, find(kind, ref.Name), true))
	}
	for i := range id.Status.Targets {
		t := &id.Status.Targets[i]
		if !seen[t.Kind+"/"+t.Name] {
			seen[t.Kind+"/"+t.Name] = true
			rows = append(rows, row(t.Kind, t.Name, t, false))
		}
	}
	return rows
}

// State names for an identity as a whole, derived from its conditions and spec.
const (
	StateDeleting    = "Deleting"
	StateExpired     = "Expired"
	StateSuspended   = "Suspended"
	StateStalled     = "Stalled"
	StateReady       = "Ready"
	StateReconciling = "Reconciling"
	StateNotReady    = "NotReady"
	StatePending     = "Pending"
)

// state is the identity's state in one word, and the reason behind it (a condition reason,
// or spec.suspend). Deletion, expiry and suspension win over readiness: an identity being
// deleted or suspended may still report Ready=True for the accounts it deactivated.
func (id *identity) state() (state, reason string) {
	conds := id.Status.Conditions
	cond := func(typ string) *metav1.Condition { return meta.FindStatusCondition(conds, typ) }
	reasonOf := func(c *metav1.Condition) string {
		if c == nil {
			return ""
		}
		return c.Reason
	}
	switch {
	case id.DeletionTimestamp != nil:
		return StateDeleting, reasonOf(cond(scimv1.ConditionReady))
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionExpired):
		return StateExpired, reasonOf(cond(scimv1.ConditionExpired))
	case id.Spec.Suspend:
		return StateSuspended, "spec.suspend"
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionStalled):
		// Governance suspends the accounts without spec.suspend: an overdue review or an
		// inactive owner past its grace.
		if r := reasonOf(cond(scimv1.ConditionStalled)); r == scimv1.ReasonReviewOverdue || r == scimv1.ReasonOwnerInactive {
			return StateSuspended, r
		}
		return StateStalled, reasonOf(cond(scimv1.ConditionStalled))
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionReady):
		return StateReady, reasonOf(cond(scimv1.ConditionReady))
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionReconciling):
		return StateReconciling, reasonOf(cond(scimv1.ConditionReconciling))
	case cond(scimv1.ConditionReady) != nil:
		return StateNotReady, reasonOf(cond(scimv1.ConditionReady))
	}
	return StatePending, ""
}

// account is the word for the account's access on the target: "off" only on the target's
// evidence, "still active" otherwise.
func (t targetRow) account() string {
	if t.AccountOff {
		return "off"
	}
	return "still active"
}

// stillActive lists the targets whose account is not provably off.
func stillActive(rows []targetRow) []targetRow {
	var out []targetRow
	for _, t := range rows {
		if !t.AccountOff {
			out = append(out, t)
		}
	}
	return out
}
