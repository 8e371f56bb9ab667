package account

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/breaker"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Cause says why accounts are taken away: it decides the deletion policy that
// applies and whether the result may be undone.
type Cause int

const (
	// CauseRetired: the identity is being deleted, or its workload was. Final: what a target
	// confirmed is remembered until the identity is gone, so it is never sent twice.
	CauseRetired Cause = iota
	// CauseExpired: the identity's expiry passed; extending it provisions again.
	CauseExpired
	// CauseDropped: the target is no longer referenced by the spec.
	CauseDropped
	// CauseWithdrawn: the target no longer allows the identity's namespace. The target's own
	// policy applies, and Orphan counts as Deactivate: a tenant cannot keep an account whose
	// access the target's owner withdrew.
	CauseWithdrawn
	// CauseSuspended: governance suspends the identity (review overdue, owner inactive past
	// its grace), or spec.suspend is set on a spec that cannot be provisioned: every account is
	// deactivated, whatever the deletion policy, and provisioned again once the suspension ends.
	CauseSuspended
)

// String says the cause in words, for a plan's reason.
func (c Cause) String() string {
	switch c {
	case CauseRetired:
		return "the identity (or its workload) is deleted"
	case CauseExpired:
		return "the identity expired"
	case CauseDropped:
		return "the target is no longer in spec.targetRefs"
	case CauseWithdrawn:
		return "the target no longer allows the namespace"
	case CauseSuspended:
		return "the identity is suspended"
	}
	return "deprovisioning"
}

// Deprovisioner is the one path by which accounts are taken away. Every entry point uses it:
// the identity's deletion (its finalizer), its workload's retirement (the revoker's fast path
// and the identity controller), expiry, a targetRef dropped from the spec, a target that no
// longer allows the namespace, and (account by account) the orphan clean-up of the target
// controllers. Whatever the entry point, an account is found by its externalId (the id on
// status is not trusted on its own, and an entry with no id is looked up all the same), each
// DELETE is charged to the target's circuit breaker just before it is sent, and a
// 404 counts as done.
type Deprovisioner struct {
	Client client.Client
	// APIReader confirms, past the cache, that a target does not exist.
	APIReader client.Reader
	Clients   connect.ClientBuilder
	Breaker   *breaker.Breaker
	// ClusterID prefixes every externalId.
	ClusterID string
	// ClusterResourceNamespace holds the secrets of ClusterScimTargets.
	ClusterResourceNamespace string
	// Revocations times final revocations, from the deletion seen to the last target
	// confirming; nil disables the histogram.
	Revocations *metrics.RevocationClock
	// SecurityEvents, when set, is sent a signed Security Event Token (RISC account-disabled
	// or account-purged) for each account a target confirmed revoked.
	SecurityEvents *secevent.Publisher
	// Streams, when set, names the Shared Signals streams that record each confirmation's
	// token, in the same status write as the evidence.
	Streams StreamRecorder
	// Clock tells the time of the evidence (nil: the real clock).
	Clock clock.PassiveClock
	// Flags are the identities a sweep found out of step: a revoked account active again is
	// revoked again.
	Flags *targets.SweepFlags
	// Dialects remembers what providers answered that discovery did not say (shared with the
	// identity and target controllers, which show it on the target's status.adaptations).
	Dialects *dialect.Observed

	// confirmed holds what targets confirmed for identities retired for good, so that neither
	// the revoker nor the identity controller sends it twice while the status that records it
	// is on its way through the API server and the cache. It saves requests; it decides
	// nothing (a repeat would find the account gone or inactive and send nothing more).
	confirmed confirmed
}

// Identity takes away every account the identity has, or may have, on the targets its spec
// names or its status records (an entry with no id is looked up all the same: a crash after a
// POST leaves one). It returns the targets that did not confirm, and whether any call was made
// in this pass.
func (d *Deprovisioner) Identity(ctx context.Context, si *scimv1.ServiceIdentity, rv Revocation) (map[string]outcome.Outcome, bool) {
	cause := rv.Cause
	entries := targets.IndexEntries(si.Namespace, si.Status.Targets)
	for _, ref := range append(slices.Clone(si.Spec.TargetRefs), d.Flags.MayHold(si)...) {
		if entries[targets.RefKey(ref, si.Namespace)] == nil {
			e := scimv1.IdentityTargetStatus{Kind: ref.TargetKind(), Name: ref.Name}
			si.Status.Targets = append(si.Status.Targets, e)
			entries[targets.RefKey(ref, si.Namespace)] = &e
		}
	}
	failed := map[string]outcome.Outcome{}
	worked, observed := false, false
	for i := range si.Status.Targets {
		entry := &si.Status.Targets[i]
		// An entry already Deprovisioned is trusted for a deprovisioning that may be undone, but
		// checked once more for a final one (this process did not confirm it): a copy of the
		// identity from before its last status write can show Deprovisioned for an account
		// provisioned again since.
		key := targets.Key(entry.Kind, si.Namespace, entry.Name)
		// ...unless a sweep found its account active again on the target.
		// An account Orphan left active is looked at again: the policy that applies now (a
		// kill switch, governance) may not leave it so.
		if off, _ := entry.AccountOff(); off && entry.State == scimv1.TargetStateDeprovisioned && cause != CauseRetired && !d.Flags.IsFlagged(targets.VerifiedKey(si, key)) {
			continue
		}
		if done, ok := d.confirmed.lookup(si, key); ok {
			*entry = done // confirmed by another pass whose status is not written yet
			continue
		}
		worked = true
		if out := d.Target(ctx, si, entry, rv); !out.OK() {
			failed[key] = out
		} else if out.Observed != "" {
			observed = true // planned, not done: nothing to time, nothing confirmed
		} else if d.Flags.Clear(targets.VerifiedKey(si, key)); cause == CauseRetired {
			d.confirmed.record(si, key, *entry)
		}
	}
	if cause == CauseRetired && worked && !observed && len(failed) == 0 {
		d.observeRevocation(si)
	}
	return failed, worked
}

// observeRevocation records the time from the deletion (of the identity or its workload) to
// now, when every target confirmed.
func (d *Deprovisioner) observeRevocation(si *scimv1.ServiceIdentity) {
	if d.Revocations != nil {
		d.Revocations.Done(si)
	}
}

// Target applies the deletion policy the cause calls for to the identity's account(s) on one
// target, and records the result on the entry.
func (d *Deprovisioner) Target(ctx context.Context, si *scimv1.ServiceIdentity, entry *scimv1.IdentityTargetStatus, rv Revocation) outcome.Outcome {
	cause := rv.Cause
	// A retirement or a withdrawal is a revocation: its calls go before provisioning and
	// sweeps under the target's rate limit, and may take the slots reserved for it. Causes a
	// tenant can set off at will (a dropped targetRef, an expiry it chose, a suspension) do
	// not jump that queue.
	if cause == CauseRetired || cause == CauseWithdrawn {
		ctx = scim.Urgent(ctx)
	}
	ref := scimv1.TargetReference{Kind: entry.Kind, Name: entry.Name}
	t, err := targets.Get(ctx, d.Client, ref, si.Namespace, d.ClusterResourceNamespace)
	if err != nil {
		if d.neverExisted(ctx, ref, si, entry, err) {
			entry.State, entry.Active = scimv1.TargetStateDeprovisioned, nil
			entry.Message = "The target does not exist; no account was provisioned there"
			return outcome.Outcome{}
		}
		return entryBlocked(entry, err)
	}
	// A target that refuses the namespace decides the policy, whatever the cause: an identity's
	// own Orphan cannot keep an account whose access the target's owner withdrew.
	if cause != CauseWithdrawn && cause != CauseSuspended {
		if refusal, err := targets.NamespaceAllowed(ctx, d.Client, t, si.Namespace); err != nil {
			return entryBlocked(entry, err)
		} else if refusal != "" {
			rv.Cause = CauseWithdrawn
		}
	}
	policy := EffectivePolicy(t, si, rv)
	if policy == scimv1.DeletionPolicyOrphan {
		d.leftOrphaned(entry)
		return outcome.Outcome{}
	}
	c, err := d.Clients.ForTarget(ctx, t)
	if err != nil {
		return entryBlocked(entry, err)
	}
	acct := d.SessionFor(si, t, c)
	if t.Spec.Mode == scimv1.ModeObserve {
		return d.plan(ctx, acct, entry, policy, rv)
	}
	entry.Plan = nil
	recorded := ""
	if entry.Revocation == nil || entry.Revocation.Result != scimv1.RevocationNotFound {
		recorded = entry.ID // an account on record that no evidence says is gone yet
	}
	ids, err := d.accounts(ctx, acct, entry, policy)
	if err == nil && len(ids) == 0 && recorded != "" {
		// The account on record is gone or off already: revoked by a process that could not
		// record it (killed, or within a namespace's grace). Its confirmation still gets its
		// Security Event Token.
		ids = []string{recorded}
	}
	if err == nil {
		err = d.evidence(ctx, si, acct, entry, ids, policy)
	}
	if err != nil {
		return entryBlocked(entry, err)
	}
	entry.State = scimv1.TargetStateDeprovisioned
	f := false
	entry.Active = &f
	entry.Message = fmt.Sprintf("Account deprovisioned (deletionPolicy %s); the target confirmed %s", policy, entry.Revocation.Result)
	return outcome.Outcome{}
}

// plan records what deprovisioning would do on a target in Observe mode, after a lookup of the
// accounts carrying our externalId (reads only): Deactivate or Delete as the policy says, or
// None when there is nothing left to do. Nothing is written; the entry keeps the state the
// target last showed.
func (d *Deprovisioner) plan(ctx context.Context, a *Session, entry *scimv1.IdentityTargetStatus, policy scimv1.DeletionPolicy, rv Revocation) outcome.Outcome {
	mine, err := a.findOurs(ctx)
	if err != nil {
		return entryBlocked(entry, err)
	}
	p := scimv1.AccountPlan{Action: scimv1.PlanNone, Reason: rv.Cause.String()}
	for _, u := range mine {
		active, present := u.Active()
		switch {
		case policy == scimv1.DeletionPolicyDelete:
			p.Action = scimv1.PlanDelete
		case !present || active:
			p.Action = scimv1.PlanDeactivate
		}
		if len(mine) == 1 {
			entry.ID, entry.Active = u.ID(), nil
			if present {
				entry.Active = &active
			}
		}
	}
	if p.Action == scimv1.PlanDeactivate {
		p.Changes = []scimv1.AttributeChange{{Path: "active", Current: "true", Desired: "false"}}
	}
	if p.Action != scimv1.PlanNone {
		p.Reason = fmt.Sprintf("%s (deletionPolicy %s, %d account(s))", p.Reason, policy, len(mine))
	}
	if entry.Plan == nil || entry.Plan.Action != p.Action || entry.Plan.Reason != p.Reason {
		now := metav1.NewTime(status.Clock(d.Clock).Now())
		p.PlannedAt = &now
		entry.Plan = &p
	}
	entry.Message = status.Truncate(fmt.Sprintf("Observe mode: would %s: %s; nothing is written", p.Action, p.Reason), 512)
	return outcome.Outcome{Observed: string(p.Action) + ": " + p.Reason}
}

// leftOrphaned records on the entry an account Orphan leaves on the target: on record, and
// never called off (AccountOff).
func (d *Deprovisioner) leftOrphaned(entry *scimv1.IdentityTargetStatus) {
	entry.State = scimv1.TargetStateDeprovisioned
	entry.Message = "Account left on the target (deletionPolicy Orphan)"
	if entry.Revocation == nil || entry.Revocation.Result != scimv1.RevocationOrphaned {
		entry.Revocation = &scimv1.RevocationEvidence{Result: scimv1.RevocationOrphaned, ConfirmedAt: metav1.NewTime(status.Clock(d.Clock).Now())}
	}
}

// accounts applies policy to the identity's accounts on the session's target: the one on
// record where it can be done as recorded (onRecord), else every account carrying our
// externalId. It returns the ids it deprovisioned.
func (d *Deprovisioner) accounts(ctx context.Context, a *Session, entry *scimv1.IdentityTargetStatus, policy scimv1.DeletionPolicy) ([]string, error) {
	if done, err := d.onRecord(ctx, a, entry, policy); err != nil || done {
		if done {
			return []string{entry.ID}, err
		}
		return nil, err
	}
	mine, err := a.findOurs(ctx)
	var ids []string
	for _, u := range mine {
		if err != nil {
			break
		}
		err = d.Account(ctx, a, u, policy, entry.Groups)
		ids = append(ids, u.ID())
	}
	return ids, err
}

// evidence reads the identity's accounts back by externalId after deprovisioning and records
// on the entry what the target confirmed: none left (NotFound), or only accounts with active
// false (Inactive). An account still active is an error: the revocation is retried, and its
// next pass looks the accounts up and deprovisions each. When a publisher is configured, a
// Security Event Token for the confirmation is recorded with it, once per confirmation on
// record: the entry is its outbox, and the token is sent once the status is written.
func (d *Deprovisioner) evidence(ctx context.Context, si *scimv1.ServiceIdentity, a *Session, entry *scimv1.IdentityTargetStatus,
	ids []string, policy scimv1.DeletionPolicy) error {
	// Read back by externalId, not by id: the same request, and it also finds a second
	// account carrying our externalId that a revocation of the account on record did not see.
	result := scimv1.RevocationNotFound
	left, err := a.findOurs(ctx)
	if err != nil {
		return fmt.Errorf("reading back the accounts on %s after deprovisioning them: %w", a.t.Key(), err)
	}
	for _, u := range left {
		if active, present := u.Active(); !present || active {
			return fmt.Errorf("account %s on %s is still active after it was deprovisioned; retrying", scim.Sanitize(u.ID(), 128), a.t.Key())
		}
		result = scimv1.RevocationInactive
	}
	if prev := entry.Revocation; prev != nil && prev.Result == result && entry.State == scimv1.TargetStateDeprovisioned {
		return nil // confirmed before: keep the time and the token recorded for it
	}
	entry.Revocation = &scimv1.RevocationEvidence{Result: result, ConfirmedAt: metav1.NewTime(status.Clock(d.Clock).Now())}
	d.publish(ctx, si, a, entry, ids)
	return nil
}

// StreamRecorder names the Shared Signals streams that record a revocation's token
// (ssf.Recorder).
type StreamRecorder interface {
	Marks(ctx context.Context, namespace, kind string, result scimv1.RevocationResult) []scimv1.StreamEvent
}

// publish records on the entry the Security Event Token of its confirmed revocation: a fresh
// jti and the subject, Pending. Nothing is sent here: the entry is the outbox, written with
// the evidence, and the security-event controller sends what it holds (securityEventEvent)
// once it is on the API server, again after a restart, until the receiver accepts it.
func (d *Deprovisioner) publish(ctx context.Context, si *scimv1.ServiceIdentity, a *Session, entry *scimv1.IdentityTargetStatus, ids []string) {
	if d.SecurityEvents == nil && d.Streams == nil || len(ids) == 0 {
		return
	}
	entry.Revocation.SecurityEvent = secevent.NewJTI()
	entry.Revocation.SecurityEventSubject = secevent.SCIMResource(a.c.Endpoint(), a.kind.Endpoint, ids[0]).Member("uri")
	if d.SecurityEvents != nil {
		entry.Revocation.SecurityEventDelivery = scimv1.SecurityEventPending
	}
	if d.Streams != nil {
		entry.Revocation.Streams = d.Streams.Marks(ctx, si.Namespace, entry.Kind, entry.Revocation.Result)
	}
}

// onRecord deprovisions the account on record without looking it up first: the deactivating
// PATCH carries If-Match with the recorded version, so a provider that enforces it applies it
// only to that account, unchanged since we last saw it as ours, and the DELETE follows only
// when the PATCH's answer shows that account with our externalId. Then a revocation costs two
// requests (PATCH, DELETE) instead of three. It reports false when it cannot: no id or version
// on record, no ETags or PATCH, the account changed or went (412, 404), or the answer does not
// show our account (a 204; a provider that reused the id and ignores If-Match, whose account
// is then deactivated but never deleted); the caller then looks the accounts up by externalId.
func (d *Deprovisioner) onRecord(ctx context.Context, a *Session, entry *scimv1.IdentityTargetStatus, policy scimv1.DeletionPolicy) (bool, error) {
	if c := a.t.Spec.Compatibility; c == nil || !c.RevokeByIfMatch {
		return false, nil // If-Match enforcement is the provider's word to give (spec.compatibility)
	}
	if entry.ID == "" || entry.Version == "" || !a.useETag() || !a.usePatch() ||
		(entry.State != scimv1.TargetStateProvisioned && entry.State != scimv1.TargetStateSuspended) {
		return false, nil
	}
	// The PATCH is always sent (the account's recorded active state may be stale), so the
	// If-Match proves it is unchanged.
	err := d.account(ctx, a, scim.Resource{"id": entry.ID}, policy, entry.Groups, entry.Version)
	if scim.IsPreconditionFailed(err) || errors.Is(err, errNotOnRecord) {
		return false, nil
	}
	return err == nil, err
}

// errNotOnRecord: the account on record answered 404 to its deactivation, or the provider
// refused the PATCH (and a PUT needs the account's body): it is looked up instead.
var errNotOnRecord = errors.New("the account on record cannot be deprovisioned as recorded")

// neverExisted reports a target that is not found, also by the API server, for an entry that
// never recorded an account: a misspelt targetRef. (A target whose accounts are on record cannot
// go: its in-use finalizer waits for the identities' entries.)
func (d *Deprovisioner) neverExisted(ctx context.Context, ref scimv1.TargetReference, si *scimv1.ServiceIdentity,
	entry *scimv1.IdentityTargetStatus, err error) bool {
	var nf *targets.NotFoundError
	if !errors.As(err, &nf) || entry.ID != "" || d.APIReader == nil {
		return false
	}
	_, err = targets.Get(ctx, d.APIReader, ref, si.Namespace, d.ClusterResourceNamespace)
	return errors.As(err, &nf)
}

// entryBlocked records on the entry why a deprovisioning did not happen, and classifies it.
func entryBlocked(entry *scimv1.IdentityTargetStatus, err error) outcome.Outcome {
	entry.State = scimv1.TargetStateDeprovisioning
	entry.Message = status.Truncate(err.Error(), 512)
	return outcome.Classify(err)
}

// Account applies a Delete or Deactivate policy to one account proven ours: it is set
// inactive first (never held back by the breaker; nothing is sent for an account already
// inactive under Deactivate), then, under Delete, taken out of the groups it joined through
// us and deleted (the DELETE charged to the breaker of the account's namespace). Deactivating
// first means a DELETE that fails or waits for the breaker still leaves the account unusable.
func (d *Deprovisioner) Account(ctx context.Context, a *Session, u scim.Resource, policy scimv1.DeletionPolicy, groups []string) error {
	return d.account(ctx, a, u, policy, groups, "")
}

// account is Account; a non-empty ifMatch makes the deactivation conditional on that version,
// and a 404 to it errNotOnRecord (onRecord's account was not read: gone, or never ours).
func (d *Deprovisioner) account(ctx context.Context, a *Session, u scim.Resource, policy scimv1.DeletionPolicy, groups []string, ifMatch string) error {
	id := u.ID()
	if active, present := u.Active(); policy == scimv1.DeletionPolicyDeactivate && present && !active {
		return nil
	}
	// Deactivating is reversible and is what security needs: the circuit breaker never holds
	// it back. Only the irreversible DELETE below is charged.
	var err error
	if a.usePatch() {
		var patched scim.Resource
		patched, err = a.c.Patch(ctx, a.kind.Endpoint, id, []scim.PatchOp{{Op: "replace", Path: "active", Value: false}}, ifMatch)
		if err == nil && ifMatch != "" && (patched == nil || patched.ID() != id || !a.Ours(patched)) {
			// The version matched, but the answer does not show our account (a 204, or a
			// provider that reused the id and does not enforce If-Match): no DELETE on that
			// word; the accounts are looked up by externalId.
			return errNotOnRecord
		}
		if scim.IsNotImplemented(err) {
			a.patchRefused(a.kind.Endpoint, err)
			if u.ExternalID() == "" { // onRecord's account: no body to PUT; look it up
				return errNotOnRecord
			}
			_, err = a.c.Replace(ctx, a.kind.Endpoint, id, scim.ReplaceBody(scim.Resource{"active": false}, u), "")
		}
	} else {
		_, err = a.c.Replace(ctx, a.kind.Endpoint, id, scim.ReplaceBody(scim.Resource{"active": false}, u), "")
	}
	if scim.IsNotFound(err) && ifMatch != "" {
		return errNotOnRecord
	}
	if scim.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deactivating account %s on %s: %w", scim.Sanitize(id, 128), a.t.Key(), err)
	}
	if policy != scimv1.DeletionPolicyDelete {
		return nil
	}
	// Providers differ in whether deleting a user drops its memberships; leave explicitly.
	for _, g := range groups {
		if err := a.leaveGroup(ctx, g, id); err != nil {
			return err
		}
	}
	if a.charge != nil {
		if err := a.charge(ctx); err != nil {
			return fmt.Errorf("account %s on %s is deactivated; deleting it waits: %w", scim.Sanitize(id, 128), a.t.Key(), err)
		}
	}
	if err := a.c.Delete(ctx, a.kind.Endpoint, id); err != nil {
		if a.refund != nil {
			a.refund() // nothing deleted (or we cannot tell): do not count it
		}
		if !scim.IsNotFound(err) {
			return fmt.Errorf("deleting account %s on %s: %w", scim.Sanitize(id, 128), a.t.Key(), err)
		}
	}
	return nil
}

// OrphanOutcome is what the orphan clean-up did with one account.
type OrphanOutcome int

const (
	// OrphanActed: deactivated (Deactivate), or deactivated and deleted (Delete).
	OrphanActed OrphanOutcome = iota
	// OrphanUntouched: nothing to do (gone, or already inactive under Deactivate).
	OrphanUntouched
	// OrphanPaused: the breaker paused the clean-up (its status says why).
	OrphanPaused
	// OrphanSkipped: the account changed since the sweep listed it (another externalId, an
	// identity claims it, a 412): it is left alone, and the next sweep judges it again.
	OrphanSkipped
)

// OrphanChangedError says why an orphan was skipped.
type OrphanChangedError struct{ id, why string }

func (e *OrphanChangedError) Error() string {
	return fmt.Sprintf("account %s %s; it is left alone", scim.Sanitize(e.id, 128), e.why)
}

// Orphan applies an orphan policy (Deactivate or Delete) to an account that carried this
// cluster's externalId prefix and had no ServiceIdentity when the sweep listed it. The list is
// no proof at the time of the clean-up: the account is read by id first, and each write goes
// to it only while a read (or the answer to the PATCH) shows it still carrying the orphaned
// externalId and no identity claiming it, with If-Match on the version read where the
// provider supports ETags. The DELETE follows only a deactivation whose answer (or, after a
// 204, a read) still shows it. An account that changed in between is skipped (outcome
// orphanSkipped, with an *errOrphanChanged saying why): not an error, the next sweep judges
// it again. The breaker is charged once per account, just before its first write.
//
// The orphan's externalId (the provider's data) names its namespace, so the breaker charges
// that namespace only when it exists and t serves it (OrphanBucket); otherwise the shared
// bucket. A pause returns orphanPaused with the *breaker.OpenError that says which bucket.
func (d *Deprovisioner) Orphan(ctx context.Context, t *targets.Target, c *scim.Client, u scim.Resource, policy scimv1.OrphanPolicy) (OrphanOutcome, error) {
	bucket, err := d.OrphanBucket(ctx, t, u.ExternalID())
	if err != nil {
		return OrphanUntouched, err
	}
	a := d.sessionOn(t, c, u.ExternalID(), "")
	d.chargeTo(a, t, bucket)
	cur, out, err := d.readOrphan(ctx, a, u.ID())
	if cur == nil {
		return out, err
	}
	active, present := cur.Active()
	deactivate := !present || active
	if !deactivate && policy == scimv1.OrphanPolicyDeactivate {
		return OrphanUntouched, nil
	}
	if out, err := chargeOrphan(ctx, a); err != nil {
		return out, err
	}
	ifMatch := a.ifMatch(cur)
	if deactivate {
		var done bool
		if ifMatch, done, out, err = d.deactivateOrphanFirst(ctx, a, cur, policy); done {
			return out, err
		}
	}
	return d.deleteOrphan(ctx, a, cur.ID(), ifMatch, deactivate)
}

// readOrphan reads the orphan again by id and checks that it is still ours and still an
// orphan. It returns nil when there is nothing to do, with what to report: gone, or changed.
func (d *Deprovisioner) readOrphan(ctx context.Context, a *Session, id string) (scim.Resource, OrphanOutcome, error) {
	cur, err := a.Read(ctx, id)
	if scim.IsNotFound(err) {
		return nil, OrphanUntouched, nil
	}
	if err != nil {
		return nil, OrphanUntouched, fmt.Errorf("reading account %s on %s: %w", scim.Sanitize(id, 128), a.t.Key(), err)
	}
	if why, err := d.stillOrphan(ctx, a, cur); err != nil {
		return nil, OrphanUntouched, err
	} else if why != "" {
		return nil, OrphanSkipped, &OrphanChangedError{id: id, why: why}
	}
	return cur, OrphanUntouched, nil
}

// chargeOrphan charges a write to an orphan to the breaker; an open breaker pauses it.
func chargeOrphan(ctx context.Context, a *Session) (OrphanOutcome, error) {
	if a.charge == nil {
		return OrphanUntouched, nil
	}
	var open *breaker.OpenError
	if err := a.charge(ctx); errors.As(err, &open) {
		return OrphanPaused, open
	} else if err != nil {
		return OrphanUntouched, err
	}
	return OrphanUntouched, nil
}

// refundCharge gives back the breaker's charge of a write that changed nothing.
func (a *Session) refundCharge() {
	if a.refund != nil {
		a.refund()
	}
}

// deactivateOrphanFirst deactivates the orphan cur. Under Delete it returns the If-Match for
// the DELETE, taken from an answer that still shows the account ours (read again where the
// PATCH's answer does not); done reports the orphan finished with, outcome and error saying how.
func (d *Deprovisioner) deactivateOrphanFirst(ctx context.Context, a *Session, cur scim.Resource, policy scimv1.OrphanPolicy) (
	ifMatch string, done bool, out OrphanOutcome, err error) {
	id := cur.ID()
	changed := func(why string) (string, bool, OrphanOutcome, error) {
		return "", true, OrphanSkipped, &OrphanChangedError{id: id, why: why}
	}
	answer, err := d.deactivateOrphan(ctx, a, cur, a.ifMatch(cur))
	switch {
	case scim.IsPreconditionFailed(err):
		a.refundCharge()
		return changed("changed since it was read (412 to its deactivation)")
	case scim.IsNotFound(err):
		a.refundCharge()
		return "", true, OrphanUntouched, nil
	case err != nil:
		a.refundCharge() // nothing changed (or we cannot tell): do not count it
		return "", true, OrphanUntouched, fmt.Errorf("deactivating account %s on %s: %w", scim.Sanitize(id, 128), a.t.Key(), err)
	}
	if policy != scimv1.OrphanPolicyDelete {
		return "", true, OrphanActed, nil
	}
	// The DELETE goes only where the answer shows the account still ours; a 204, or an answer
	// without the id, the externalId or (with ETags) the version is not that answer: read it
	// again.
	if answer == nil || answer.ID() != id || answer.ExternalID() == "" || (a.useETag() && answer.Version() == "") {
		if answer, err = a.Read(ctx, id); scim.IsNotFound(err) {
			return "", true, OrphanActed, nil
		} else if err != nil {
			return "", true, OrphanActed, fmt.Errorf("reading back account %s on %s after deactivating it: %w", scim.Sanitize(id, 128), a.t.Key(), err)
		}
	}
	if why, err := d.stillOrphan(ctx, a, answer); err != nil {
		return "", true, OrphanActed, err
	} else if why != "" {
		return changed(why + " once deactivated: it is not deleted")
	}
	return a.ifMatch(answer), false, OrphanActed, nil
}

// deleteOrphan deletes the orphan id, If-Match where the provider supports ETags; deactivated
// says the deactivation before it was charged and stands.
func (d *Deprovisioner) deleteOrphan(ctx context.Context, a *Session, id, ifMatch string, deactivated bool) (OrphanOutcome, error) {
	err := a.c.DeleteIfMatch(ctx, a.kind.Endpoint, id, ifMatch)
	switch {
	case scim.IsPreconditionFailed(err):
		if !deactivated {
			a.refundCharge()
		}
		return OrphanSkipped, &OrphanChangedError{id: id, why: "changed since it was read (412 to its deletion)"}
	case scim.IsNotFound(err):
		return OrphanActed, nil
	case err != nil:
		return OrphanActed, fmt.Errorf("deleting account %s on %s: %w", scim.Sanitize(id, 128), a.t.Key(), err)
	}
	return OrphanActed, nil
}

// deactivateOrphan sets the orphan inactive (PATCH, or PUT of the account just read when the
// provider refuses PATCH), conditional on ifMatch. The answer is nil after a 204.
func (d *Deprovisioner) deactivateOrphan(ctx context.Context, a *Session, cur scim.Resource, ifMatch string) (scim.Resource, error) {
	if a.usePatch() {
		answer, err := a.c.Patch(ctx, a.kind.Endpoint, cur.ID(), []scim.PatchOp{{Op: "replace", Path: "active", Value: false}}, ifMatch)
		if !scim.IsNotImplemented(err) {
			return answer, err
		}
		a.patchRefused(a.kind.Endpoint, err)
	}
	return a.c.Replace(ctx, a.kind.Endpoint, cur.ID(), scim.ReplaceBody(scim.Resource{"active": false}, cur), ifMatch)
}

// stillOrphan says why u, just read from the target, is no longer the orphan the sweep
// listed ("" when it is): it must carry the same externalId, with this cluster's prefix, and
// no ServiceIdentity may claim it (read past the cache: one created since the sweep adopts
// this very account).
func (d *Deprovisioner) stillOrphan(ctx context.Context, a *Session, u scim.Resource) (string, error) {
	if !a.Ours(u) {
		return "no longer carries the orphaned externalId", nil
	}
	rest, ok := strings.CutPrefix(a.externalID, d.ClusterID+"/")
	ns, name, ok2 := strings.Cut(rest, "/")
	if d.ClusterID == "" || !ok || !ok2 || ns == "" || name == "" {
		return "does not carry this cluster's externalId prefix", nil
	}
	reader := d.APIReader
	if reader == nil {
		reader = d.Client
	}
	switch err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &scimv1.ServiceIdentity{}); {
	case err == nil:
		return "is claimed by ServiceIdentity " + ns + "/" + name, nil
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("checking that no ServiceIdentity claims account %s on %s: %w", scim.Sanitize(u.ID(), 128), a.t.Key(), err)
	}
	return "", nil
}

// SessionFor prepares the SCIM calls for si's account on t, with the circuit breaker.
func (d *Deprovisioner) SessionFor(si *scimv1.ServiceIdentity, t *targets.Target, c *scim.Client) *Session {
	a := d.sessionOn(t, c, ExternalID(d.ClusterID, si), si.EffectiveUserName())
	if a.adopt = AdoptOn(si, t); a.adopt != nil {
		if a.adoptRefused = adoptAllowed(t); a.adoptRefused != "" {
			a.adopt = nil
		}
	}
	return a
}

func (d *Deprovisioner) sessionOn(t *targets.Target, c *scim.Client, externalID, userName string) *Session {
	a := &Session{c: c, t: t, externalID: externalID, userName: userName,
		matchAttr: targets.MatchAttribute(t), adoption: t.Spec.Adoption, kind: dialect.TypeOf(t), dialects: d.Dialects}
	d.chargeTo(a, t, namespaceOf(d.ClusterID, externalID))
	return a
}

// chargeTo has a's deletions charged to one bucket of t's breaker (a refund goes back to the
// bucket the charge used).
func (d *Deprovisioner) chargeTo(a *Session, t *targets.Target, namespace string) {
	a.charge, a.refund = nil, nil
	if d.Breaker == nil {
		return
	}
	charged := namespace
	a.charge = func(ctx context.Context) error {
		var err error
		charged, err = d.Breaker.ChargeBucket(ctx, t, namespace)
		return err
	}
	a.refund = func() { d.Breaker.Refund(t, charged) }
}

// OrphanBucket is the breaker bucket an orphan with this externalId is charged to: its
// namespace when that namespace exists and t serves it (a ScimTarget its own namespace, a
// ClusterScimTarget those spec.allowedNamespaces allows), otherwise the shared bucket, so a
// provider that lists accounts naming made-up namespaces cannot add a share per name.
func (d *Deprovisioner) OrphanBucket(ctx context.Context, t *targets.Target, externalID string) (string, error) {
	ns := namespaceOf(d.ClusterID, externalID)
	if ns == "" {
		return breaker.SharedBucket, nil
	}
	if !t.ClusterScoped() {
		if ns != t.Namespace {
			return breaker.SharedBucket, nil
		}
	} else if refusal, err := targets.NamespaceAllowed(ctx, d.Client, t, ns); apierrors.IsNotFound(err) || (err == nil && refusal != "") {
		return breaker.SharedBucket, nil
	} else if err != nil {
		return "", fmt.Errorf("checking namespace %q of an orphaned account on %s: %w", ns, t.Key(), err)
	}
	switch err := d.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); {
	case apierrors.IsNotFound(err):
		return breaker.SharedBucket, nil
	case err != nil:
		return "", fmt.Errorf("checking namespace %q of an orphaned account on %s: %w", ns, t.Key(), err)
	}
	return ns, nil
}

// confirmed records, per identity, the deprovisionings targets have confirmed. An entry goes
// with its identity.
type confirmed struct {
	m sync.Map // types.NamespacedName -> confirmedEntry
}

type confirmedEntry struct {
	uid     types.UID
	targets map[string]scimv1.IdentityTargetStatus // targets.Key -> the Deprovisioned entry
}

// lookup returns the confirmed entry of one target of si, if any.
func (c *confirmed) lookup(si *scimv1.ServiceIdentity, key string) (scimv1.IdentityTargetStatus, bool) {
	v, ok := c.m.Load(client.ObjectKeyFromObject(si))
	if !ok || v.(confirmedEntry).uid != si.UID {
		return scimv1.IdentityTargetStatus{}, false
	}
	e, ok := v.(confirmedEntry).targets[key]
	return e, ok
}

// record notes a confirmed deprovisioning. Callers hold the identity's lock.
func (c *confirmed) record(si *scimv1.ServiceIdentity, key string, entry scimv1.IdentityTargetStatus) {
	name := client.ObjectKeyFromObject(si)
	next := confirmedEntry{uid: si.UID, targets: map[string]scimv1.IdentityTargetStatus{}}
	if v, ok := c.m.Load(name); ok && v.(confirmedEntry).uid == si.UID {
		next.targets = maps.Clone(v.(confirmedEntry).targets)
	}
	next.targets[key] = entry
	c.m.Store(name, next)
}

func (c *confirmed) forget(name types.NamespacedName) { c.m.Delete(name) }

// namespaceOf is the namespace an externalId of this cluster names ("<cluster-id>/<namespace>/
// <name>"); "" for one that names none.
func namespaceOf(clusterID, externalID string) string {
	rest, ok := strings.CutPrefix(externalID, clusterID+"/")
	if !ok {
		return ""
	}
	ns, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return ns
}

// Forget drops what was confirmed for the identity name: it is gone.
func (d *Deprovisioner) Forget(name types.NamespacedName) { d.confirmed.forget(name) }
