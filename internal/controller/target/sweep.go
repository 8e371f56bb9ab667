package target

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// A sweep checks every account of this cluster on one target with one paged list (filtered by
// the cluster's externalId prefix where the provider can, else unfiltered): each account is
// compared with its identity's spec (drift), and an account without an identity is an orphan.
// An identity whose account differs, is missing or is not the one on record is flagged and
// handed to the identity controller, which reads and corrects that account alone. While a
// target's sweeps succeed, its identities make no call of their own at their resync: 10,000
// identities cost one list of 50 pages per interval instead of 10,000 GETs.

// maxSweepPageSize bounds the page a provider's maxResults may make a sweep ask for.
const maxSweepPageSize = 1000

// sweepMemo is the last sweep of a target as this process made it: the cache may not show
// the status write yet, and a write that lost a conflict must not cost a sweep.
type sweepMemo struct {
	// uid is the target's: a target created again under the same name is swept afresh, not
	// credited with its predecessor's sweep.
	uid     types.UID
	sweep   *scimv1.SweepStatus
	orphans *scimv1.OrphanReport
}

// sweepRequestGap is the shortest time between two sweeps of a target that a request
// (annotation scim.nhi.dev/sweep-requested-at) can cause.
const sweepRequestGap = 5 * time.Second

// sweepBudget is how long one sweep may take: half its interval, at most five minutes.
func sweepBudget(interval time.Duration) time.Duration { return min(interval/2, 5*time.Minute) }

// SweepReconciler sweeps the Ready targets of one kind on workers of its own: a provider that
// lists slowly, page after page, holds a sweep worker for at most the sweep's budget, never the
// workers that probe targets, make them Ready and release them. It shares the target
// reconciler's clients, memos and clean-up; it writes status.sweep, status.orphans and
// status.adaptations only.
type SweepReconciler struct {
	*Reconciler
}

// sweepWorkers is how many targets of one kind are swept at once.
const sweepWorkers = 2

// Reconcile implements reconcile.Reconciler.
func (r *SweepReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.newObject()
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	t := r.view(obj)
	// Only a target probed Ready for its current spec is swept; the target controller's
	// status change wakes this one.
	if !obj.GetDeletionTimestamp().IsZero() || t.Status.ObservedGeneration != obj.GetGeneration() ||
		!meta.IsStatusConditionTrue(t.Status.Conditions, scimv1.ConditionReady) {
		return ctrl.Result{}, nil
	}
	base := obj.DeepCopyObject().(client.Object)
	wait, err := r.sweepIfDue(ctx, t)
	if perr := r.summarizePlan(ctx, t); perr != nil && err == nil {
		err = perr
	}
	t.Status.Adaptations = dialect.Adaptations(t, r.Deprovisioner.Dialects.All(t.Key()))
	if !equality.Semantic.DeepEqual(r.view(base).Status, t.Status) {
		// Optimistic lock: a stale base would merge this sweep's report into another's. On a
		// conflict the sweep is not repeated: its memo (sweeps) is written again.
		if perr := status.Patch(ctx, r, obj, base, true); perr != nil {
			return ctrl.Result{}, errors.Join(err, fmt.Errorf("patching status: %w", perr))
		}
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// SetupWithManager registers the sweep controller of r.Kind.
func (r *SweepReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(r.newObject(), builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			kube.AnnotationChanged(scimv1.SweepRequestedAnnotation), readyChanged{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: sweepWorkers, RateLimiter: kube.CappedRateLimiter(r.recheck()),
			NewQueue: kube.NewNamespaceFairQueue}).
		Named("sweep-" + strings.ToLower(r.Kind)).
		Complete(r)
}

// readyChanged passes the updates that change whether a target is Ready for its spec: a
// target just probed Ready is swept at once.
type readyChanged struct{ predicate.Funcs }

func (readyChanged) Update(e event.UpdateEvent) bool {
	ready := func(o client.Object) bool {
		gt, ok := o.(scimv1.GenericTarget)
		return ok && gt.TargetStatus().ObservedGeneration == o.GetGeneration() &&
			meta.IsStatusConditionTrue(gt.TargetStatus().Conditions, scimv1.ConditionReady)
	}
	return ready(e.ObjectOld) != ready(e.ObjectNew)
}

// sweepIfDue sweeps the target when its interval has passed; it returns when the next sweep is due.
func (r *Reconciler) sweepIfDue(ctx context.Context, t *targets.Target) (time.Duration, error) {
	if r.ClusterID == "" {
		return 0, nil
	}
	interval := targets.SweepInterval(t)
	last := r.lastSweep(t)
	requested := status.Truncate(t.Object.GetAnnotations()[scimv1.SweepRequestedAnnotation], 256)
	if due := sweepDue(last.sweep, requested, interval, status.Clock(r.Clock).Now()); due > 0 {
		t.Status.Sweep, t.Status.Orphans = last.sweep, last.orphans
		return due, nil
	}
	// One sweep at a time per namespace: a tenant's slow providers hold one sweep worker, not
	// all of them. A target's deletion stops its sweep (forget).
	ctx, run, ok := r.memory.runs.begin(ctx, t)
	if !ok {
		return sweepRequestGap, nil
	}
	defer r.memory.runs.end(t.Key(), run)
	// A sweep has a time budget: a provider that answers slowly page after page holds a sweep
	// worker for that long at most, and then not again before the next interval.
	ctx, cancel := context.WithTimeout(ctx, sweepBudget(interval))
	defer cancel()
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return 0, err
	}
	// The sweep, and the orphans it cleans up, wait for revocations and provisioning under the
	// target's rate limit.
	ctx = scim.WithPriority(ctx, scim.PrioritySweep)
	s := &sweep{r: r, t: t, c: c, kind: dialect.TypeOf(t), prefix: r.ClusterID + "/", seen: sets.New[string]()}
	if err := s.run(ctx); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && r.memory.runs.live(run) {
			r.Recorder.Eventf(t.Object, nil, "Warning", "SweepTimedOut", "Sweep",
				"The sweep of %s did not finish within its budget of %s; its identities read their own accounts until a sweep does",
				t.Key(), sweepBudget(interval))
			return kube.Jitter(interval), nil
		}
		return 0, fmt.Errorf("sweeping %s: %w", t.Key(), err)
	}
	now := metav1.NewTime(status.Clock(r.Clock).Now())
	s.status.LastSweepTime = &now
	s.status.LastHandledRequest = requested
	t.Status.Sweep = &s.status
	if err := r.reportOrphans(ctx, t, c, s.orphans, last.orphans, now, run); err != nil {
		return 0, err
	}
	if !r.memory.runs.live(run) {
		return 0, nil // the target went while it was swept: keep nothing of it
	}
	r.memory.sweeps.Store(t.Key(), sweepMemo{uid: t.Object.GetUID(), sweep: t.Status.Sweep.DeepCopy(), orphans: t.Status.Orphans.DeepCopy()})
	return kube.Jitter(interval), nil
}

// lastSweep is the target's last sweep: on its status, or in this process's memo when that is
// newer (the status write may not have reached the cache yet, or failed).
func (r *Reconciler) lastSweep(t *targets.Target) sweepMemo {
	last := sweepMemo{sweep: t.Status.Sweep, orphans: t.Status.Orphans}
	if v, ok := r.memory.sweeps.Load(t.Key()); ok {
		if mem := v.(sweepMemo); mem.uid == t.Object.GetUID() && sweepTime(last.sweep).Before(sweepTime(mem.sweep)) {
			last = sweepMemo{sweep: mem.sweep.DeepCopy(), orphans: mem.orphans.DeepCopy()}
		}
	}
	return last
}

// sweepDue is how long until the next sweep (<= 0: now), after last, every interval. A new
// request (the sweep-requested-at annotation) sweeps at once, but no sooner than
// sweepRequestGap after the last sweep: whoever may annotate the target cannot make it list the
// provider in a loop.
func sweepDue(last *scimv1.SweepStatus, requested string, interval time.Duration, now time.Time) time.Duration {
	at := sweepTime(last)
	if at.IsZero() {
		return 0
	}
	since := now.Sub(at)
	due := interval - since
	if requested != last.LastHandledRequest {
		due = min(due, sweepRequestGap-since)
	}
	return due
}

// sweepRuns are the sweeps in progress. Its zero value is ready to use.
type sweepRuns struct {
	mu sync.Mutex
	// runs are the sweeps running, by target key.
	runs map[string]*sweepRun
	// busy are the namespaces with a ScimTarget being swept (ClusterScimTargets, the cluster
	// admin's, are not limited).
	busy map[string]bool
}

// sweepRun is one sweep in progress.
type sweepRun struct {
	cancel    context.CancelFunc
	namespace string
	stopped   bool
}

// begin registers the sweep of t and returns its context; false when another ScimTarget of
// t's namespace is being swept.
func (s *sweepRuns) begin(ctx context.Context, t *targets.Target) (context.Context, *sweepRun, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == nil {
		s.runs, s.busy = map[string]*sweepRun{}, map[string]bool{}
	}
	if !t.ClusterScoped() && s.busy[t.Namespace] {
		return ctx, nil, false
	}
	ctx, cancel := context.WithCancel(ctx)
	run := &sweepRun{cancel: cancel}
	if !t.ClusterScoped() {
		run.namespace = t.Namespace
		s.busy[t.Namespace] = true
	}
	s.runs[t.Key()] = run
	return ctx, run, true
}

// end unregisters a sweep that returned.
func (s *sweepRuns) end(key string, run *sweepRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	run.cancel()
	if s.runs[key] == run {
		delete(s.runs, key)
	}
	if run.namespace != "" {
		delete(s.busy, run.namespace)
	}
}

// stop cancels the sweep of a target that is gone; what it found is not kept.
func (s *sweepRuns) stop(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if run := s.runs[key]; run != nil {
		run.stopped = true
		run.cancel()
	}
}

// live reports whether run's target is still there (no stop).
func (s *sweepRuns) live(run *sweepRun) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !run.stopped
}

func sweepTime(s *scimv1.SweepStatus) time.Time {
	if s == nil || s.LastSweepTime == nil {
		return time.Time{}
	}
	return s.LastSweepTime.Time
}

// sweep is one pass over a target's accounts.
type sweep struct {
	r      *Reconciler
	t      *targets.Target
	c      *scim.Client
	kind   dialect.AccountType
	prefix string
	// seen holds the externalIds listed, to find the accounts on record that are missing.
	seen    sets.Set[string]
	orphans []scim.Resource
	status  scimv1.SweepStatus
}

// run lists the accounts, compares each with its identity, then flags the identities whose
// account on record was not listed.
func (s *sweep) run(ctx context.Context) error {
	filter := s.prefix
	if !s.t.ClusterScoped() {
		// A tenant's own target is judged for its own namespace only: its server could list
		// other namespaces' externalIds to learn which of their identities exist.
		filter += s.t.Namespace + "/"
	}
	pageSize := account.PageSize
	if caps := s.t.Status.Capabilities; caps != nil && caps.MaxResults != nil && *caps.MaxResults > 0 {
		pageSize = min(int(*caps.MaxResults), maxSweepPageSize)
	}
	s.status.Listing = scimv1.SweepFiltered
	page := func(p []scim.Resource) error { return s.page(ctx, p) }
	each := s.c.EachPage
	if caps := s.t.Status.Capabilities; caps != nil && caps.CursorPaging != nil && *caps.CursorPaging {
		each = s.c.EachPageByCursor // RFC 9865: no startIndex drift while accounts come and go
	}
	err := each(ctx, s.kind.Endpoint, "externalId sw "+scim.Quote(filter), pageSize, 0, page)
	if err != nil && refusedFilter(err) {
		s.reset()
		s.status.Listing = scimv1.SweepUnfiltered
		s.status.Message = status.Truncate("The provider refused the filter externalId sw ("+err.Error()+"); every account is listed and this cluster's are picked out", 512)
		err = each(ctx, s.kind.Endpoint, "", pageSize, 0, page)
		if err != nil && (refusedFilter(err) || errors.Is(err, scim.ErrLimitExceeded)) {
			s.reset()
			s.status = scimv1.SweepStatus{Listing: scimv1.SweepPerIdentity,
				Message: status.Truncate("The provider cannot list its accounts within the operator's bounds ("+err.Error()+"); each identity reads its own account at its resync, and orphans are not found", 512)}
			return nil
		}
	}
	if err != nil {
		return err
	}
	return s.missing(ctx)
}

// refusedFilter: the provider answered the list, and refused it for good (not a transient
// failure, an auth problem or a list beyond our bounds).
func refusedFilter(err error) bool {
	return !scim.IsRetryable(err) && !scim.IsUnauthorized(err) && !errors.Is(err, scim.ErrLimitExceeded) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

func (s *sweep) reset() {
	s.seen.Clear()
	s.orphans = nil
	s.status = scimv1.SweepStatus{Requests: s.status.Requests}
}

// page handles one page of the list: the accounts of this cluster (and, on a ScimTarget, of
// its namespace) are compared with their identity.
func (s *sweep) page(ctx context.Context, page []scim.Resource) error {
	s.status.Requests++
	for _, u := range page {
		ext := u.ExternalID()
		rest, ok := strings.CutPrefix(ext, s.prefix)
		if !ok {
			continue
		}
		ns, name, ok := strings.Cut(rest, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") || (!s.t.ClusterScoped() && ns != s.t.Namespace) ||
			!s.r.Flags.Watches(ns) {
			continue // the provider lists it; no identity of ours is to be woken for it
		}
		s.status.Accounts++
		duplicate := s.seen.Has(ext)
		s.seen.Insert(ext)
		si := &scimv1.ServiceIdentity{}
		switch err := s.r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, si); {
		case apierrors.IsNotFound(err):
			orphan := scim.Resource{"id": u.ID(), "userName": dialect.AccountName(u, s.kind), "externalId": ext}
			if active, present := u.Active(); present {
				orphan["active"] = active
			}
			s.orphans = append(s.orphans, orphan)
			continue
		case err != nil:
			return err
		}
		if !duplicate && s.inStep(si, u) {
			s.status.Checked++
			continue
		}
		s.flag(ctx, si) // a second account with the same externalId is a conflict its reconcile reports
	}
	return nil
}

// inStep reports whether account u is the identity's account on record and matches its spec.
// An identity being changed, deleted or reconciled for the first time is left to its own
// reconcile; an identity that no longer references this target is flagged (its reconcile
// deprovisions the account, or finds it is on record already).
func (s *sweep) inStep(si *scimv1.ServiceIdentity, u scim.Resource) bool {
	entry := s.entry(si)
	if entry == nil || !si.DeletionTimestamp.IsZero() || si.Status.ObservedGeneration != si.Generation {
		return entry != nil // not yet (or no longer) in step: its own reconcile is due anyway
	}
	switch entry.State {
	case scimv1.TargetStateProvisioned, scimv1.TargetStateSuspended:
	case scimv1.TargetStateDeprovisioned:
		// Revoked (expired, suspended by governance, access withdrawn): an account active
		// again on the target is flagged, and its identity revokes it again. One left on
		// purpose (deletionPolicy Orphan) is not.
		active, present := u.Active()
		return !present || !active || entry.Revocation == nil || entry.Revocation.Result == scimv1.RevocationOrphaned
	default:
		return true // failing or pending: its own reconcile retries it
	}
	if !s.references(si) || entry.ID != u.ID() {
		return false
	}
	desired, err := account.DesiredUser(si, account.ExternalID(s.r.ClusterID, si))
	if err != nil {
		return true // the spec is blocked; its reconcile says why
	}
	return len(scim.Diff(s.r.Deprovisioner.Dialects.AccountOf(desired, s.kind, s.t, si.Status.Owner), u)) == 0
}

func (s *sweep) entry(si *scimv1.ServiceIdentity) *scimv1.IdentityTargetStatus {
	for i := range si.Status.Targets {
		if e := &si.Status.Targets[i]; targets.Key(e.Kind, si.Namespace, e.Name) == s.t.Key() {
			return e
		}
	}
	return nil
}

// concerns: the identity references the target or has an account on record there.
func (s *sweep) concerns(si *scimv1.ServiceIdentity) bool {
	return s.entry(si) != nil || s.references(si)
}

func (s *sweep) references(si *scimv1.ServiceIdentity) bool {
	for _, ref := range si.Spec.TargetRefs {
		if targets.RefKey(ref, si.Namespace) == s.t.Key() {
			return true
		}
	}
	return false
}

// flag hands the identity to its reconcile, when the identity has a part in this target: it
// references it, or has an account on record there (a withdrawn one included, so that an
// account made active again is revoked again). A provider listing accounts under the
// externalIds of other identities (another namespace's, on a ClusterScimTarget) wakes none
// of them, and leaves no flag that no reconcile would ever clear.
func (s *sweep) flag(ctx context.Context, si *scimv1.ServiceIdentity) {
	if !s.concerns(si) {
		return
	}
	s.status.Flagged++
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s.r.Flags.Flag(ctx, si, s.t.Key()) // a full channel drops the wake-up: the flag stays, read at the identity's resync
}

// missing flags the identities whose account on record the list did not show: deleted on the
// target, or listed under another externalId.
func (s *sweep) missing(ctx context.Context) error {
	list, err := targets.Identities(ctx, s.r.Client, s.t.Kind, s.t.Namespace, s.t.Name)
	if err != nil {
		return err
	}
	for i := range list.Items {
		si := &list.Items[i]
		entry := s.entry(si)
		if entry == nil || entry.ID == "" || !si.DeletionTimestamp.IsZero() || s.seen.Has(account.ExternalID(s.r.ClusterID, si)) {
			continue
		}
		if entry.State == scimv1.TargetStateProvisioned || entry.State == scimv1.TargetStateSuspended {
			s.flag(ctx, si)
		}
	}
	return nil
}

// reportOrphans puts the sweep's orphans on status (an Event when their number changed) and
// applies spec.orphans.policy.
func (r *Reconciler) reportOrphans(ctx context.Context, t *targets.Target, c *scim.Client, orphans []scim.Resource,
	last *scimv1.OrphanReport, now metav1.Time, run *sweepRun) error {
	policy := orphanPolicy(t)
	if policy == scimv1.OrphanPolicyIgnore || t.Status.Sweep.Listing == scimv1.SweepPerIdentity {
		t.Status.Orphans = nil
		return nil
	}
	acted := 0
	// In Observe mode the orphans are reported and planned (status.plan), never acted on.
	if t.Spec.Mode != scimv1.ModeObserve && (policy == scimv1.OrphanPolicyDeactivate || policy == scimv1.OrphanPolicyDelete) {
		var err error
		if acted, err = r.cleanOrphans(ctx, t, c, orphans, policy); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(orphans))
	for _, u := range orphans {
		names = append(names, scim.Sanitize(u.UserName(), 256)) // the provider's text, shown on status
	}
	sort.Strings(names)
	previous := int32(-1)
	if last != nil {
		previous = last.Count
	}
	t.Status.Orphans = &scimv1.OrphanReport{Count: int32(len(orphans)), UserNames: names[:min(len(names), orphanNamesShown)], LastScanTime: &now}
	if r.memory.runs.live(run) { // a deleted target's series are gone (forget): not made again
		r.Metrics.Orphans(t.Key(), len(orphans))
	}
	if len(orphans) > 0 && int32(len(orphans)) != previous {
		r.Recorder.Eventf(t.Object, nil, "Warning", "OrphansFound", "Scan",
			"%d account(s) carry this cluster's externalId prefix but have no ServiceIdentity (policy %s, %d acted on): %s",
			len(orphans), policy, acted, strings.Join(t.Status.Orphans.UserNames, ", "))
	}
	return nil
}
