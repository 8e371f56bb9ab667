// Package identity reconciles ServiceIdentities: it provisions each on its targets, applies the
// kill switch and governance first, and takes the accounts away (expiry, a dropped or
// withdrawing target, deletion, the retirement of its workload) through the Deprovisioner; the
// revoker is its fast path for deletions.
package identity

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/governance"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/nhi-dev/scim-operator/internal/workloads"
)

// Reconciler provisions each ServiceIdentity as a SCIM User on its targets.
type Reconciler struct {
	client.Client
	// APIReader reads objects the cache does not hold (workloads named by spec.workloadRef).
	APIReader client.Reader
	Clients   connect.ClientBuilder
	Recorder  recorder.EventRecorder
	// ClusterID prefixes every externalId.
	ClusterID string
	// ClusterResourceNamespace holds the secrets of ClusterScimTargets.
	ClusterResourceNamespace string
	// MaxConcurrentReconciles bounds parallel reconciles.
	MaxConcurrentReconciles int
	// Clock tells the time for expiry, resyncs and status times (nil: the real clock).
	Clock clock.PassiveClock
	// Revocations times revocations (shared with the workload controllers); nil disables the
	// histogram.
	Revocations *metrics.RevocationClock
	// Metrics records drift corrections (nil: not recorded).
	Metrics *metrics.Metrics
	// NamespaceGrace: an identity whose namespace is being deleted, revoked, is left this long
	// to the namespace controller before its status records it (<= 0: DefaultNamespaceGrace).
	NamespaceGrace time.Duration
	// StampsGuarded says the creation stamps cannot be forged or changed by anyone but the
	// operator (config/admission's creation-stamps and status-writers policies are installed):
	// a new identity's account on a ClusterScimTarget is then, like one on its namespace's own
	// ScimTarget, created before anything is written on its status.
	StampsGuarded bool
	// Deprovisioner is the one path that takes accounts away (shared with the revoker and the
	// target controllers' orphan clean-up).
	Deprovisioner *account.Deprovisioner
	// locks serialises this controller and the revoker on one identity.
	locks kube.KeyLocks
	// Watched is the set of namespaces the cache holds (nil: every namespace).
	Watched sets.Set[string]
	// Flags are the identities a target's sweep found out of step (nil: no sweeps).
	Flags *targets.SweepFlags
	// Governor decides what the targets' governance asks of the identity (owner, maxTTL,
	// review).
	Governor *governance.Governor
	// SecurityEvents is true when Security Event Tokens are sent: identities then carry
	// SecurityEventsFinalizer, which the security-event controller releases.
	SecurityEvents bool
	// memory is what this process remembers of identities (memory.go).
	memory memory
	// wake lets the revoker hand an identity it could not finish to this controller.
	wake chan event.GenericEvent
}

// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	unlock := r.locks.Lock(req.NamespacedName)
	defer unlock()
	si := &scimv1.ServiceIdentity{}
	if err := r.Get(ctx, req.NamespacedName, si); err != nil {
		if apierrors.IsNotFound(err) {
			r.Deprovisioner.Forget(req.NamespacedName)
			if k, ok := r.memory.known.LoadAndDelete(req.NamespacedName); ok {
				r.forgetKeys(k.(identityKeys)) // gone without our finalizer: by hand, or force-orphan
			}
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if err := r.finalizers(ctx, si); err != nil {
		return ctrl.Result{}, err
	}

	base := si.DeepCopy()
	released := false
	defer func() {
		if !released {
			// Keyed as the pass leaves it: the targets this pass recorded are forgotten too.
			r.memory.known.Store(req.NamespacedName, identityKeysOf(si))
		}
		if released || equality.Semantic.DeepEqual(base.Status, si.Status) {
			return
		}
		keepStamped(si, base)
		if err := status.Patch(ctx, r, si, base, false); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("patching status: %w", err))
			r.unrecorded(si, base)
		}
	}()

	if !si.DeletionTimestamp.IsZero() {
		res, done, err := r.reconcileDelete(ctx, si)
		released = done
		return res, err
	}
	return r.reconcileNormal(ctx, si, base)
}

func (r *Reconciler) now() time.Time { return status.Clock(r.Clock).Now() }

// reconcileNormal runs the phases of a live identity, each a method named for what it
// decides, in this order:
//
//  1. govern     the owner and the review are checked first: the kill switch (spec.suspend)
//     and a governance suspension hold whatever else follows, so no later phase can
//     return with an account left active;
//  2. lifetime   an identity past its expiry is deprovisioned, and stays so until extended;
//  3. retirement an identity whose workload is gone (decided from state) is revoked;
//  4. suspend    a governance suspension deactivates every account;
//  5. desired    the account the spec asks for, or why none can be provisioned (with
//     spec.suspend set, a spec that cannot be provisioned deactivates every account);
//  6. record     targets named for the first time are recorded on status before any call;
//  7. sync       the account on each referenced target is made to match;
//  8. drop       accounts on targets no longer referenced are deprovisioned;
//  9. report     conditions, Events and when to look again.
func (r *Reconciler) reconcileNormal(ctx context.Context, si, base *scimv1.ServiceIdentity) (ctrl.Result, error) {
	si.Status.UserName = si.EffectiveUserName()
	pol := r.Governor.PolicyOf(ctx, si)
	p := &syncPass{outcomes: map[string]outcome.Outcome{}, seen: map[string]bool{}}
	var govWhy, govReason string
	govWhy, govReason, p.wake = r.govern(ctx, si, pol)
	kill := account.Killed(si)
	if govWhy != "" {
		kill = "suspended by governance (" + govReason + ")"
	}
	expErr, expired := r.lifetime(si, pol)
	if expired {
		return r.reconcileExpired(ctx, si, kill)
	}
	if why, err := r.ownerRetired(ctx, si); err != nil {
		return ctrl.Result{}, err
	} else if why != "" {
		failed, _ := r.Deprovisioner.Identity(ctx, si, account.Revocation{Cause: account.CauseRetired, Kill: kill})
		if wait := r.namespaceGrace(ctx, si); len(failed) == 0 && wait > 0 {
			// Revoked; the namespace controller deletes the identity next, and its deletion
			// records the revocation (from this process's memory of it, or by reading the
			// targets again after a restart). Nothing is written meanwhile.
			si.Status = *base.Status.DeepCopy()
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		return r.reconcileOwnerRetired(si, failed, why)
	}
	if govWhy != "" {
		return r.reconcileSuspended(ctx, si, govWhy, govReason, p.wake)
	}
	p.desired, p.blocked = r.desired(ctx, si, expErr, pol)
	if p.desired == nil && si.Spec.Suspend {
		// The kill switch does not wait for a spec that can be provisioned.
		return r.reconcileSuspended(ctx, si, "spec.suspend is set: every account is to be deactivated; the spec cannot be provisioned: "+
			blockedSummary(p.blocked), scimv1.ReasonInvalidSpec, 0)
	}
	// The owner is there: record it (after desired, which may have added the ownerReference of
	// spec.workloadRef), so its deletion is noticed from state alone later (after a restart, or
	// once orphan propagation removed the ownerReference). An owner no longer referenced but
	// still there was detached on purpose.
	si.Status.Workload = workloads.Referenced(si)
	if p.desired != nil {
		if err := r.record(ctx, si, base); err != nil {
			return r.unrecordable(ctx, si, p, err)
		}
	}
	p.entries = targets.IndexEntries(si.Namespace, si.Status.Targets)
	r.strays(si, p)
	r.sync(ctx, si, p)
	r.drop(ctx, si, p)
	return r.report(si, p)
}

// syncPass carries one reconcile of a live identity through its phases.
type syncPass struct {
	desired scim.Resource                           // nil: the spec cannot be provisioned, blocked says why
	blocked map[string]outcome.Outcome              // the spec's own problems, keyed by the field
	entries map[string]*scimv1.IdentityTargetStatus // status entries as the pass found them
	seen    map[string]bool                         // targets the spec references
	next    []scimv1.IdentityTargetStatus           // status entries as the pass leaves them
	// outcomes per target; resync is the earliest target resync interval.
	outcomes map[string]outcome.Outcome
	resync   time.Duration
	// resyncRequest is the value of the resync annotation this pass acts on.
	resyncRequest string
	// wake is when governance wants to look again (owner re-check, review due); 0: never.
	wake time.Duration
}

// govern is the governance phase: the owner is checked against the owner directories and the
// review is checked. It returns why every account must be suspended (a review overdue, an
// owner inactive past a Suspend policy's grace; "" when none need be), the reason, and when
// governance wants to look again.
func (r *Reconciler) govern(ctx context.Context, si *scimv1.ServiceIdentity, pol governance.Policy) (string, string, time.Duration) {
	// A resync request asks the owner directory again rather than its cached answer.
	_, fresh := r.resyncRequested(si)
	return r.Governor.Verdict(ctx, si, pol, fresh)
}

// resyncRequested returns the value of the identity's resync annotation, and whether it is a
// request not acted on yet (one this process has not handled).
func (r *Reconciler) resyncRequested(si *scimv1.ServiceIdentity) (string, bool) {
	request := si.Annotations[scimv1.ResyncRequestedAnnotation]
	handled, _ := r.memory.resyncRequests.Load(si.UID)
	return request, request != "" && handled != request
}

// reconcileSuspended deactivates every account of an identity governance suspends (or whose
// spec.suspend is set on a spec that cannot be provisioned), through
// the one deprovisioning path, whatever the spec says (a spec made invalid, or a group the
// guardrails refuse, does not keep an account active), and says why. Satisfying governance
// (an attestation, an active owner) provisions the accounts again.
func (r *Reconciler) reconcileSuspended(ctx context.Context, si *scimv1.ServiceIdentity, why, reason string,
	wake time.Duration) (ctrl.Result, error) {
	if outcomes, _ := r.Deprovisioner.Identity(ctx, si, account.Revocation{Cause: account.CauseSuspended, Kill: why}); len(outcomes) > 0 {
		return r.deprovisionBlocked(si, outcomes, "Suspended ("+why+"); waiting to deactivate")
	}
	gen := si.Generation
	conds := &si.Status.Conditions
	if planned := plannedRevocations(si); len(planned) > 0 {
		why = "Observe mode: nothing was written, no account is deactivated (the plan: " + strings.Join(planned, "; ") + "); " + why
	}
	why = status.Truncate(why, 1024)
	if c := meta.FindStatusCondition(*conds, scimv1.ConditionReady); c == nil || c.Reason != reason {
		r.Recorder.Eventf(si, nil, "Warning", reason, "Suspend", status.Truncate(why, 512))
	}
	status.Stall(conds, &si.Status.ObservedGeneration, gen, reason, why)
	return ctrl.Result{RequeueAfter: wake}, nil
}

// lifetime sets status.expiresAt and reports whether the identity expired (an expiry that
// does not parse is returned: it blocks provisioning, not the rest).
func (r *Reconciler) lifetime(si *scimv1.ServiceIdentity, pol governance.Policy) (error, bool) {
	exp, err := expiresAt(si)
	exp = governance.CapExpiry(si, exp, pol)
	si.Status.ExpiresAt = exp
	if exp != nil && !r.now().Before(exp.Time) {
		return nil, true
	}
	if err == nil && meta.IsStatusConditionTrue(si.Status.Conditions, scimv1.ConditionExpired) {
		status.Set(&si.Status.Conditions, si.Generation, scimv1.ConditionExpired, metav1.ConditionFalse, scimv1.ReasonExtended,
			"Expiry moved to the future; provisioning again")
		si.Status.DeprovisionedAt = nil
	}
	return err, false
}

// desired is the account the spec asks for. A spec that cannot be provisioned stops
// provisioning, not the withdrawal of access: targets that refuse the namespace are still
// handled by sync.
func (r *Reconciler) desired(ctx context.Context, si *scimv1.ServiceIdentity, expErr error, pol governance.Policy) (scim.Resource, map[string]outcome.Outcome) {
	if expErr != nil {
		return nil, map[string]outcome.Outcome{"spec": {Stalled: expErr.Error(), Reason: scimv1.ReasonInvalidSpec}}
	}
	if len(pol.RequireOwner) > 0 && si.Spec.Owner == "" {
		return nil, map[string]outcome.Outcome{"spec.owner": {Reason: scimv1.ReasonInvalidSpec,
			Stalled: fmt.Sprintf("spec.owner is required by %s: set the accountable person's e-mail address", strings.Join(pol.RequireOwner, ", "))}}
	}
	if o := workloads.EnsureOwner(ctx, r.Client, r.APIReader, si); !o.OK() {
		return nil, map[string]outcome.Outcome{"spec.workloadRef": o}
	}
	u, err := account.DesiredUser(si, account.ExternalID(r.ClusterID, si))
	if err != nil {
		return nil, map[string]outcome.Outcome{"spec": {Stalled: err.Error(), Reason: scimv1.ReasonInvalidSpec}}
	}
	return u, nil
}

// sync makes the account on each referenced target match the spec.
func (r *Reconciler) sync(ctx context.Context, si *scimv1.ServiceIdentity, p *syncPass) {
	// A new value of the resync annotation checks every account now, whatever the interval.
	var forced bool
	p.resyncRequest, forced = r.resyncRequested(si)
	for _, ref := range si.Spec.TargetRefs {
		key := targets.RefKey(ref, si.Namespace)
		if p.seen[key] {
			continue
		}
		p.seen[key] = true
		entry := p.entries[key]
		if entry == nil {
			entry = &scimv1.IdentityTargetStatus{Kind: ref.TargetKind(), Name: ref.Name, State: scimv1.TargetStatePending}
		}
		out, interval := r.syncTarget(ctx, si, ref, entry, p.desired, forced)
		if p.desired == nil && out.OK() {
			// Blocked: an existing entry stays as it was, and the spec's outcome says why.
			if p.entries[key] != nil {
				p.next = append(p.next, *entry)
			}
			continue
		}
		p.outcomes[key] = out
		if interval > 0 && (p.resync == 0 || interval < p.resync) {
			p.resync = interval
		}
		p.next = append(p.next, *entry)
	}
}

// drop deprovisions the accounts on targets no longer referenced before their entries go (in
// a stable order, so the status does not churn). The entry's id is not needed: the account is
// looked up by externalId.
func (r *Reconciler) drop(ctx context.Context, si *scimv1.ServiceIdentity, p *syncPass) {
	for _, key := range slices.Sorted(maps.Keys(p.entries)) {
		if p.seen[key] {
			continue
		}
		entry := p.entries[key]
		if out := r.Deprovisioner.Target(ctx, si, entry, account.Revocation{Cause: account.CauseDropped, Kill: account.Killed(si)}); !out.OK() {
			p.outcomes[key] = out
			p.next = append(p.next, *entry)
			continue
		}
		r.Flags.Clear(targets.VerifiedKey(si, key))
		if off, _ := entry.AccountOff(); !off && r.targetLives(ctx, si, entry) {
			// An account Orphan left active stays on record, so the kill switch, governance,
			// a withdrawal and the sweeps keep seeing it (and nobody is told it is off).
			p.next = append(p.next, *entry)
		}
	}
}

// report turns the pass into status, conditions and when to look again.
func (r *Reconciler) report(si *scimv1.ServiceIdentity, p *syncPass) (ctrl.Result, error) {
	maps.Copy(p.outcomes, p.blocked)
	si.Status.Targets = p.next
	res, err := r.finish(si, p.outcomes)
	if err == nil {
		r.memory.resyncRequests.Store(si.UID, p.resyncRequest)
	}
	if err == nil && res.RequeueAfter == 0 && p.resync > 0 {
		res.RequeueAfter = kube.Jitter(p.resync)
	}
	// Wake exactly at expiry rather than polling for it, and when governance asks (an owner
	// re-check, a review falling due), even when a target is stalled: expiry is honoured on the
	// healthy targets whatever the others do, and an overdue review or an inactive owner is
	// looked at again. (A stall is still reported in the conditions; only the wake-up is kept.)
	var wakes []time.Duration
	if exp := si.Status.ExpiresAt; exp != nil {
		wakes = append(wakes, max(exp.Sub(r.now()), time.Millisecond))
	}
	if p.wake > 0 {
		wakes = append(wakes, p.wake)
	}
	if len(wakes) > 0 && (err == nil || errors.Is(err, reconcile.TerminalError(nil))) {
		until := slices.Min(wakes)
		if err != nil {
			return ctrl.Result{RequeueAfter: until}, nil
		}
		if res.RequeueAfter == 0 || until < res.RequeueAfter {
			res.RequeueAfter = until
		}
	}
	return res, err
}

// finish turns per-target outcomes into conditions and the result.
func (r *Reconciler) finish(si *scimv1.ServiceIdentity, outcomes map[string]outcome.Outcome) (ctrl.Result, error) {
	gen := si.Generation
	f := outcome.Fold(outcomes)
	conds := &si.Status.Conditions
	switch {
	case len(f.Stalled) > 0:
		msg := strings.Join(append(f.Stalled, f.Transient...), "; ")
		status.Stall(conds, &si.Status.ObservedGeneration, gen, f.Reason, msg)
		r.Recorder.Eventf(si, nil, "Warning", f.Reason, "Provision", status.Truncate(msg, 512))
		// A human has to change something; the watch on the spec brings us back.
		return ctrl.Result{}, reconcile.TerminalError(errors.New(msg))
	case len(f.Transient) > 0:
		msg := strings.Join(f.Transient, "; ")
		status.Progress(conds, gen, f.Reason, msg, "Retrying: "+msg)
		if len(f.Errs) > 0 {
			return ctrl.Result{}, errors.Join(f.Errs...)
		}
		return ctrl.Result{RequeueAfter: f.RetryAfter}, nil
	}
	wasReady := meta.IsStatusConditionTrue(*conds, scimv1.ConditionReady)
	// A new identity's first provisioning is told by its Ready condition alone (its
	// lastTransitionTime is when): an Event there would be a second Kubernetes write per new
	// identity that no process reads. Becoming Ready again after anything else (a failure, a
	// suspension, a revocation) is an Event.
	first := meta.FindStatusCondition(*conds, scimv1.ConditionReady) == nil
	if len(f.Observed) > 0 {
		msg := fmt.Sprintf("Observe mode: nothing written for account %q; the plan: %s", si.Status.UserName, strings.Join(f.Observed, "; "))
		if n := len(outcomes) - len(f.Observed); n > 0 {
			msg += fmt.Sprintf("; provisioned on the %d other target(s)", n)
		}
		status.Succeed(conds, &si.Status.ObservedGeneration, gen, scimv1.ReasonObserved, status.Truncate(msg, 1024))
		return ctrl.Result{}, nil
	}
	msg := fmt.Sprintf("Account %q provisioned on %d target(s)", si.Status.UserName, len(outcomes))
	if si.Spec.Suspend {
		msg = fmt.Sprintf("Account %q suspended (active=false) on %d target(s)", si.Status.UserName, len(outcomes))
	}
	status.Succeed(conds, &si.Status.ObservedGeneration, gen, scimv1.ReasonProvisioned, msg)
	if !wasReady && !first {
		r.Recorder.Eventf(si, nil, "Normal", scimv1.ReasonProvisioned, "Provision", msg)
	}
	return ctrl.Result{}, nil
}

// expiresAt is spec.expiresAt, or creation + spec.ttl; an error names a value that does not
// parse (one stored before the API server validated it).
func expiresAt(si *scimv1.ServiceIdentity) (*metav1.Time, error) {
	switch {
	case si.Spec.ExpiresAt != nil:
		t, err := si.Spec.ExpiresAt.Parse()
		if err != nil {
			return nil, fmt.Errorf("spec.expiresAt: %w", err)
		}
		mt := metav1.NewTime(t)
		return &mt, nil
	case si.Spec.TTL != nil:
		d, err := si.Spec.TTL.Parse()
		if err != nil {
			return nil, fmt.Errorf("spec.ttl: %w", err)
		}
		t := metav1.NewTime(si.CreationTimestamp.Add(d))
		return &t, nil
	}
	return nil, nil
}

// SetupWithManager registers the controller, its indexes and watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &scimv1.ServiceIdentity{}, targets.IdentityIndex,
		func(o client.Object) []string {
			si := o.(*scimv1.ServiceIdentity)
			keys := make([]string, 0, len(si.Spec.TargetRefs))
			for _, ref := range si.Spec.TargetRefs {
				keys = append(keys, targets.RefKey(ref, si.Namespace))
			}
			for _, e := range si.Status.Targets {
				keys = append(keys, targets.Key(e.Kind, si.Namespace, e.Name))
			}
			// And, before the first status, the targets it was created with: a target that may
			// hold an account made just before a kill is not released until that is settled.
			for _, ref := range targets.Stamped(si) {
				keys = append(keys, targets.RefKey(ref, si.Namespace))
			}
			return keys
		}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &scimv1.ServiceIdentity{}, workloads.IdentityIndex,
		func(o client.Object) []string { return workloads.Keys(o.(*scimv1.ServiceIdentity)) }); err != nil {
		return err
	}
	r.wake = make(chan event.GenericEvent, 64)
	if r.Flags == nil || r.Governor == nil || r.Deprovisioner == nil {
		return errors.New("identity.Reconciler needs its Flags, Governor and Deprovisioner")
	}
	if err := r.setupRevoker(mgr); err != nil {
		return err
	}
	b := r.watchWorkloads(ctrl.NewControllerManagedBy(mgr), false)
	if r.StampsGuarded {
		// Whether the policies the flag promises are in force, from their events (the controller
		// starts once their informers synced: without RBAC to read them, the manager fails at
		// start rather than a reconcile waiting).
		b = b.Watches(&admissionv1.ValidatingAdmissionPolicy{}, handler.EnqueueRequestsFromMapFunc(r.guardChanged)).
			Watches(&admissionv1.ValidatingAdmissionPolicyBinding{}, handler.EnqueueRequestsFromMapFunc(r.guardChanged))
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			r.reportUnguarded(ctx, mgr.GetCache())
			return nil
		})); err != nil {
			return err
		}
	}
	return b.
		For(&scimv1.ServiceIdentity{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, deletionPredicate{clock: r.Revocations},
			// The stamps this controller writes with the finalizer (without the admission policy)
			// do not wake it again: the pass that wrote them goes on.
			kube.AnnotationsChangedExcept(scimv1.TargetsAtCreationAnnotation, scimv1.WorkloadAtCreationAnnotation),
			kube.OwnersChanged{}))).
		Watches(&scimv1.ScimTarget{}, handler.EnqueueRequestsFromMapFunc(r.identitiesForTarget(scimv1.KindScimTarget)),
			builder.WithPredicates(targets.Changed{})).
		Watches(&scimv1.ClusterScimTarget{}, handler.EnqueueRequestsFromMapFunc(r.identitiesForTarget(scimv1.KindClusterScimTarget)),
			builder.WithPredicates(targets.Changed{})).
		// A namespace's labels decide whether a ClusterScimTarget's selector allows it: a change
		// provisions, or withdraws access and deprovisions, at once rather than at the next resync.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceChanged), builder.WithPredicates(
			predicate.Or[client.Object](predicate.LabelChangedPredicate{}, namespaceDeletionStarted{}))).
		WatchesRawSource(source.Channel(r.wake, &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Channel(r.Flags.Woken(), &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("serviceidentity").
		Complete(r)
}

// namespaceChanged maps a namespace whose labels changed to its identities that use a
// ClusterScimTarget, and a namespace being deleted to all of its identities (retired).
func (r *Reconciler) namespaceChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if !o.GetDeletionTimestamp().IsZero() {
		return r.allIdentitiesInNamespace(ctx, o)
	}
	return r.identitiesInNamespace(ctx, o)
}

// identitiesInNamespace maps a namespace to its identities that use a ClusterScimTarget.
func (r *Reconciler) identitiesInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	if r.Watched != nil && !r.Watched.Has(o.GetName()) {
		return nil // --watch-namespaces: the cache has nothing of it
	}
	list := &scimv1.ServiceIdentityList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Error(err, "Listing identities of a namespace")
		return nil
	}
	var reqs []reconcile.Request
	for _, si := range list.Items {
		if slices.ContainsFunc(si.Spec.TargetRefs, scimv1.TargetReference.ClusterScoped) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: si.Namespace, Name: si.Name}})
		}
	}
	return reqs
}

func (r *Reconciler) identitiesForTarget(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list, err := targets.Identities(ctx, r.Client, kind, o.GetNamespace(), o.GetName())
		if err != nil {
			logf.FromContext(ctx).Error(err, "Listing identities of a target")
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, si := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: si.Namespace, Name: si.Name}})
		}
		return reqs
	}
}

// deletionPredicate passes updates that start a deletion or change finalizers, and notes
// when a deletion was first seen for the revocation histogram.
type deletionPredicate struct {
	predicate.Funcs
	clock *metrics.RevocationClock
}

func (p deletionPredicate) Update(e event.UpdateEvent) bool {
	started := deletionStarted{clock: p.clock}.Update(e) // notes the time
	return started || kube.DeletionProgress{}.Update(e)
}

// blockedSummary joins what blocks a spec, in a stable order.
func blockedSummary(blocked map[string]outcome.Outcome) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(blocked)) {
		parts = append(parts, k+": "+blocked[k].Stalled)
	}
	return strings.Join(parts, "; ")
}

// targetLives reports whether the target of an entry exists and is not being deleted: an
// account left on a target that goes cannot be reached any more, and its entry must not keep
// the target's deletion waiting.
func (r *Reconciler) targetLives(ctx context.Context, si *scimv1.ServiceIdentity, entry *scimv1.IdentityTargetStatus) bool {
	t, err := targets.Get(ctx, r.Client, scimv1.TargetReference{Kind: entry.Kind, Name: entry.Name}, si.Namespace, r.ClusterResourceNamespace)
	return err == nil && t.Object.GetDeletionTimestamp().IsZero()
}

// Remembered counts what this process holds in memory about identities (accounts verified,
// resync requests acted on, withdrawals, retirements, the keys of each identity): it must fall
// back to zero once the identities are gone, however they went.
func (r *Reconciler) Remembered() int {
	n := 0
	for _, m := range []*sync.Map{&r.memory.verified, &r.memory.resyncRequests, &r.memory.withdrawn, &r.memory.retired, &r.memory.known} {
		m.Range(func(any, any) bool { n++; return true })
	}
	return n
}
