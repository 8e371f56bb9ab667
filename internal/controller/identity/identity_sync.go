package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/governance"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// syncTarget makes the account on one target match the spec. It returns the outcome and the
// target's resync interval.
func (r *Reconciler) syncTarget(ctx context.Context, si *scimv1.ServiceIdentity, ref scimv1.TargetReference,
	entry *scimv1.IdentityTargetStatus, desired scim.Resource, forced bool) (outcome.Outcome, time.Duration) {
	t, err := targets.Get(ctx, r.Client, ref, si.Namespace, r.ClusterResourceNamespace)
	if err != nil {
		return r.entryFailed(entry, outcome.Classify(err)), 0
	}
	interval := targets.ResyncInterval(t.Spec)
	key := targets.VerifiedKey(si, t.Key())
	if refusal, err := targets.NamespaceAllowed(ctx, r.Client, t, si.Namespace); err != nil {
		return r.entryFailed(entry, outcome.Outcome{Err: err, Reason: scimv1.ReasonProgressing}), 0
	} else if refusal != "" {
		if r.Flags.IsFlagged(key) {
			r.memory.withdrawn.Delete(key) // a sweep saw the account active again
			r.Flags.Clear(key)
		}
		return r.accessRefused(ctx, si, t, entry, refusal), 0
	}
	r.memory.withdrawn.Delete(key)
	if desired == nil {
		return outcome.Outcome{}, 0 // the spec is blocked; reconcileNormal reports why
	}
	if err := dialect.TypeReady(t); err != nil {
		return r.entryFailed(entry, outcome.Outcome{Err: err, Reason: scimv1.ReasonProgressing}), 0
	}
	desired = r.Deprovisioner.Dialects.AccountOf(desired, dialect.TypeOf(t), t, si.Status.Owner)
	g := governance.GuardrailsOf(t)
	if err := g.Check(t, si); err != nil {
		// Nothing is provisioned. An account that exists keeps what it has until the spec
		// complies, but for the groups it joined that the guardrails no longer allow.
		if lerr := r.leaveDisallowedGroups(ctx, si, t, entry, g); lerr != nil {
			err = errors.Join(err, lerr)
		}
		if si.Spec.Suspend {
			// The kill switch does not wait for a spec the guardrails allow.
			note := "; spec.suspend is set: any account here is deactivated"
			if off, _ := entry.AccountOff(); !off || r.Flags.IsFlagged(key) {
				out := r.Deprovisioner.Target(ctx, si, entry, account.Revocation{Cause: account.CauseSuspended, Kill: "spec.suspend is set"})
				if !out.OK() {
					return out, 0
				}
				if out.Observed != "" {
					note = "; spec.suspend is set, but the target is in Observe mode: nothing is written, the account would be " + out.Observed
				}
			}
			entry.Message = status.Truncate(err.Error()+note, 512)
			return outcome.Outcome{Stalled: entry.Message, Reason: scimv1.ReasonGuardrail}, 0
		}
		return r.entryFailed(entry, outcome.Outcome{Stalled: err.Error(), Reason: scimv1.ReasonGuardrail}), 0
	}
	if t.Spec.Mode == scimv1.ModeObserve {
		// A plan is made again when the spec changed, a check was asked for or a sweep flagged
		// the account, else once per interval; an account of ours the plan leaves as it is is
		// compared by the target's sweeps meanwhile.
		settled := entry.Plan != nil && si.Status.ObservedGeneration == si.Generation && !forced && !r.Flags.IsFlagged(key)
		covered := targets.SweepCovers(t, r.now()) && entry.Plan != nil && entry.Plan.Action == scimv1.PlanNone
		if wait, skip := checkDue(settled, covered, r.lastVerified(key, entry), r.now(), interval); skip {
			return outcome.Outcome{Observed: describePlan(*entry.Plan)}, wait
		}
		out := r.observe(ctx, si, t, entry, desired)
		if out.Observed != "" {
			r.memory.verified.Store(key, r.now())
			r.Flags.Clear(key)
		}
		return out, interval
	}
	// An account planned in Observe mode is provisioned once enforced, whatever else says it is
	// in step (the plan may hold a change the sweeps do not compare, such as a group left).
	planned := entry.Plan != nil && entry.Plan.Action != scimv1.PlanNone
	wantState := scimv1.TargetStateProvisioned
	if si.Spec.Suspend {
		wantState = scimv1.TargetStateSuspended // governance suspends through the account.Deprovisioner instead (reconcileSuspended)
	}
	inStep := !planned && entry.State == wantState && entry.ID != "" && si.Status.ObservedGeneration == si.Generation
	if wait, skip := checkDue(inStep && !forced && !r.Flags.IsFlagged(key), targets.SweepCovers(t, r.now()),
		r.lastVerified(key, entry), r.now(), interval); skip {
		entry.Plan = nil // a None left from Observe mode: the account is in step
		return outcome.Outcome{}, wait
	}

	if err := r.provision(ctx, si, t, entry, desired, wantState, inStep); err != nil {
		return r.entryFailed(entry, outcome.Classify(err)), 0
	}
	entry.Plan = nil // enforced: what happened is what the status records
	r.Flags.Clear(key)
	return outcome.Outcome{}, interval
}

// observe plans instead of provisioning, on a target in Observe mode: the account is looked up
// as provisioning would (reads only; the target's client refuses any write), and what would be
// done is recorded on entry.Plan. What the read showed of an account already ours is recorded
// too, as evidence: a plan never claims a state the target did not show.
func (r *Reconciler) observe(ctx context.Context, si *scimv1.ServiceIdentity, t *targets.Target,
	entry *scimv1.IdentityTargetStatus, desired scim.Resource) outcome.Outcome {
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return r.entryFailed(entry, outcome.Classify(err))
	}
	acct := r.sessionFor(si, t, c)
	acct.Desired = desired
	plan, user, err := acct.Plan(ctx, entry.ID, entry.Groups, si.Spec.Groups)
	if err != nil {
		return r.entryFailed(entry, outcome.Classify(err))
	}
	if si.Spec.Suspend && plan.Action != scimv1.PlanNone && plan.Reason == "" {
		plan.Reason = "spec.suspend is set"
	}
	r.recordPlan(entry, plan)
	if user != nil && acct.Ours(user) {
		entry.ID = user.ID()
		entry.UserName = scim.Sanitize(dialect.AccountName(user, dialect.TypeOf(t)), 256)
		entry.Active = nil
		if active, present := user.Active(); present {
			entry.Active = &active
		}
		entry.Version = recordedVersion(user)
	}
	entry.Message = status.Truncate(fmt.Sprintf("Observe mode: would %s; nothing is written", describePlan(plan)), 512)
	return outcome.Outcome{Observed: describePlan(plan)}
}

// sessionFor is the identity's session on t; on a ClusterScimTarget an account it adopts may
// belong only to groups the target's guardrails allow the identity's namespace.
func (r *Reconciler) sessionFor(si *scimv1.ServiceIdentity, t *targets.Target, c *scim.Client) *account.Session {
	acct := r.Deprovisioner.SessionFor(si, t, c)
	if t.ClusterScoped() {
		g := governance.GuardrailsOf(t)
		acct.GroupAllowed = func(name string) bool { return g.GroupAllowed(name, si.Namespace) }
	}
	return acct
}

// recordPlan puts plan on the entry, keeping the time of an identical earlier plan (no status
// write for a plan that did not change).
func (r *Reconciler) recordPlan(entry *scimv1.IdentityTargetStatus, plan scimv1.AccountPlan) {
	if entry.Plan != nil {
		was := *entry.Plan
		was.PlannedAt = nil
		if equality.Semantic.DeepEqual(was, plan) {
			return
		}
	}
	now := metav1.NewTime(r.now())
	plan.PlannedAt = &now
	entry.Plan = &plan
}

// describePlan says a plan in a few words: "Update (displayName, active; +groups a)".
func describePlan(p scimv1.AccountPlan) string {
	var what []string
	for _, c := range p.Changes {
		what = append(what, c.Path)
	}
	if len(p.GroupsAdded) > 0 {
		what = append(what, "+groups "+strings.Join(p.GroupsAdded, ","))
	}
	if len(p.GroupsRemoved) > 0 {
		what = append(what, "-groups "+strings.Join(p.GroupsRemoved, ","))
	}
	s := string(p.Action)
	if p.Action == scimv1.PlanNone {
		s = "change nothing"
	}
	if len(what) > 0 {
		s += " (" + strings.Join(what, ", ") + ")"
	}
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return s
}

// checkDue decides whether an account is read now. settled: the account is in step with this
// generation, no check was requested and no sweep flagged it. Then no call is made when the
// target's sweeps cover it (they compare it with the spec at every interval), or when it was
// verified less than interval ago; wait is when to look again.
func checkDue(settled, covered bool, lastVerified, now time.Time, interval time.Duration) (wait time.Duration, skip bool) {
	switch {
	case !settled:
		return 0, false
	case covered:
		return interval, true
	case !lastVerified.IsZero() && now.Sub(lastVerified) < interval:
		return interval - now.Sub(lastVerified), true
	}
	return 0, false
}

// accountChange is what provisioning did to an account.
type accountChange struct {
	adopted, recreated, updated bool
}

// provision makes the account on t match desired (found by externalId, or read by the id on
// record), says in an Event what changed, and records the account on the entry. inStep: the
// entry already recorded this generation's account.
func (r *Reconciler) provision(ctx context.Context, si *scimv1.ServiceIdentity, t *targets.Target,
	entry *scimv1.IdentityTargetStatus, desired scim.Resource, wantState scimv1.TargetState, inStep bool) error {
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return err
	}
	acct := r.sessionFor(si, t, c)
	acct.Desired = desired
	user, adopted, updated, err := acct.Ensure(ctx, entry.ID)
	if err != nil {
		return err
	}
	active, present := user.Active()
	if wantState == scimv1.TargetStateSuspended && (!present || active) {
		// The target did not show the account inactive: a suspension is never recorded on
		// the desired state's word, and the next pass tries again.
		return fmt.Errorf("account %s on %s is still active after it was suspended; retrying", scim.Sanitize(user.ID(), 128), t.Key())
	}
	change := accountChange{adopted: adopted, recreated: inStep && user.ID() != entry.ID, updated: updated}
	// What the provider returned is bounded and sanitised before it is shown anywhere.
	shownName := scim.Sanitize(dialect.AccountName(user, dialect.TypeOf(t)), 256)
	r.announce(si, t, entry, user, wantState, change, inStep)
	unchanged := inStep && change == accountChange{} && entry.Version == recordedVersion(user)
	joined := entry.Groups
	if entry.ID != user.ID() {
		joined = nil // a new, recreated or adopted account: nothing joined through us yet
	}
	entry.ID = user.ID()
	entry.Groups = joined
	entry.UserName = shownName
	entry.Active = nil
	if present {
		entry.Active = &active
	}
	entry.Version = recordedVersion(user)
	entry.State = wantState
	entry.Message = ""
	entry.Revocation = nil // provisioned (again): an earlier revocation's evidence no longer holds
	if !sameSet(joined, si.Spec.Groups) {
		if entry.Groups, err = acct.SyncGroups(ctx, user.ID(), si.Spec.Groups, joined); err != nil {
			return err
		}
	}
	now := r.now()
	r.memory.verified.Store(targets.VerifiedKey(si, t.Key()), now)
	// An unchanged account is not worth a status write at every resync: lastSyncTime moves
	// when something changed, and otherwise at most every syncHeartbeat.
	if !unchanged || entry.LastSyncTime == nil || now.Sub(entry.LastSyncTime.Time) >= syncHeartbeat {
		t := metav1.NewTime(now)
		entry.LastSyncTime = &t
	}
	return nil
}

// announce says in an Event (and the drift metric) what provisioning changed on an account.
func (r *Reconciler) announce(si *scimv1.ServiceIdentity, t *targets.Target, entry *scimv1.IdentityTargetStatus,
	user scim.Resource, wantState scimv1.TargetState, change accountChange, inStep bool) {
	shownName, shownID := scim.Sanitize(dialect.AccountName(user, dialect.TypeOf(t)), 256), scim.Sanitize(user.ID(), 128)
	switch {
	case change.adopted:
		r.Recorder.Eventf(si, nil, "Normal", "Adopted", "Provision", "Adopted existing account %q (id %s) on %s", shownName, shownID, t.Key())
	case change.recreated:
		r.Metrics.DriftCorrected(t.Key(), "recreated")
		r.Recorder.Eventf(si, nil, "Warning", "DriftCorrected", "Resync", "Account %q was deleted on %s; recreated", shownName, t.Key())
	case change.updated && inStep:
		r.Metrics.DriftCorrected(t.Key(), "updated")
		r.Recorder.Eventf(si, nil, "Warning", "DriftCorrected", "Resync", "Account %q was changed on %s; owned attributes restored", shownName, t.Key())
	case wantState == scimv1.TargetStateSuspended && entry.State != wantState:
		r.Recorder.Eventf(si, nil, "Warning", "Suspended", "Suspend", "Account %q set active=false on %s (spec.suspend)", shownName, t.Key())
	case entry.State == scimv1.TargetStateSuspended && wantState == scimv1.TargetStateProvisioned:
		r.Recorder.Eventf(si, nil, "Normal", "Resumed", "Suspend", "Account %q set active=true on %s", shownName, t.Key())
	case change.updated && entry.ID != "":
		r.Recorder.Eventf(si, nil, "Normal", "Updated", "Provision", "Account %q updated on %s", shownName, t.Key())
	}
}

// maxVersionBytes bounds the ETag recorded on status (a provider chooses it).
const maxVersionBytes = 256

// recordedVersion is the account's ETag as status records it: kept only when status can hold
// it as it is, else none (and no If-Match is built from status).
func recordedVersion(u scim.Resource) string {
	if v := u.Version(); len(v) <= maxVersionBytes && scim.Sanitize(v, 0) == v {
		return v
	}
	return ""
}

// syncHeartbeat bounds how stale status.targets[].lastSyncTime may be for an unchanged account.
const syncHeartbeat = time.Hour

// lastVerified is when the account was last confirmed: in memory since this process started,
// else the recorded lastSyncTime.
func (r *Reconciler) lastVerified(key string, entry *scimv1.IdentityTargetStatus) time.Time {
	var last time.Time
	if entry.LastSyncTime != nil {
		last = entry.LastSyncTime.Time
	}
	if v, ok := r.memory.verified.Load(key); ok && v.(time.Time).After(last) {
		last = v.(time.Time)
	}
	return last
}

func sameSet(a, b []string) bool { return sets.New(a...).Equal(sets.New(b...)) }

func (r *Reconciler) entryFailed(entry *scimv1.IdentityTargetStatus, o outcome.Outcome) outcome.Outcome {
	entry.State = scimv1.TargetStateError
	if o.Stalled != "" {
		entry.Message = o.Stalled
	} else if o.Err != nil {
		entry.Message = o.Err.Error()
	}
	entry.Message = status.Truncate(entry.Message, 512)
	return o
}

// leaveDisallowedGroups takes the account out of the groups it joined through the operator that
// the target's guardrails no longer allow (they were narrowed), once a read proved the account
// ours.
func (r *Reconciler) leaveDisallowedGroups(ctx context.Context, si *scimv1.ServiceIdentity, t *targets.Target,
	entry *scimv1.IdentityTargetStatus, g governance.Guardrails) error {
	keep := slices.DeleteFunc(slices.Clone(entry.Groups), func(name string) bool { return !g.GroupAllowed(name, si.Namespace) })
	if entry.ID == "" || len(keep) == len(entry.Groups) || t.Spec.Mode == scimv1.ModeObserve {
		return nil
	}
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return err
	}
	acct := r.Deprovisioner.SessionFor(si, t, c)
	user, err := acct.Read(ctx, entry.ID)
	if err != nil || !acct.Ours(user) {
		return nil // not provably ours (or gone): nothing to take back through this id
	}
	entry.Groups, err = acct.SyncGroups(ctx, user.ID(), keep, entry.Groups)
	return err
}

// accessRefused handles an identity whose namespace the target does not (or no longer)
// allow: nothing is provisioned, and every account it has there is deprovisioned through the
// one deprovisioning path (ownership proven by a lookup, breaker charged for real calls only),
// with the target's deletion policy (an identity's own Orphan does not keep an account whose
// access was withdrawn). The status is not trusted to say there is nothing to withdraw: one
// lookup per identity is made, then remembered (a restart repeats it once).
func (r *Reconciler) accessRefused(ctx context.Context, si *scimv1.ServiceIdentity, t *targets.Target,
	entry *scimv1.IdentityTargetStatus, refusal string) outcome.Outcome {
	key := targets.VerifiedKey(si, t.Key())
	if _, done := r.memory.withdrawn.Load(key); !done {
		had := entry.ID != ""
		out := r.Deprovisioner.Target(ctx, si, entry, account.Revocation{Cause: account.CauseWithdrawn, Kill: account.Killed(si)})
		if !out.OK() {
			return out
		}
		if out.Observed != "" {
			// Nothing was withdrawn: nothing is remembered as done, and nothing says it was.
			msg := refusal + "; Observe mode: nothing is written, the withdrawal would " + out.Observed
			entry.Message = status.Truncate(msg, 512)
			return outcome.Outcome{Stalled: msg, Reason: scimv1.ReasonNamespaceForbidden}
		}
		r.memory.withdrawn.Store(key, true)
		if had {
			r.Recorder.Eventf(si, nil, "Warning", "AccessWithdrawn", "Deprovision", "%s; account %q deprovisioned on %s",
				refusal, si.EffectiveUserName(), t.Key())
		}
	}
	msg := refusal + "; nothing is provisioned there, and any account this identity had there was deprovisioned"
	entry.State, entry.Message = scimv1.TargetStateDeprovisioned, status.Truncate(msg, 512)
	return outcome.Outcome{Stalled: msg, Reason: scimv1.ReasonNamespaceForbidden}
}
