// Package target reconciles ScimTargets and ClusterScimTargets: the probe that makes a target
// Ready, its in-use finalizer and credential snapshot, the sweep that checks every account of
// this cluster on it (on workers of its own), and the orphan clean-up.
package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/breaker"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Reconciler probes a ScimTarget or ClusterScimTarget (one reconcile for both kinds):
// credentials resolved, ServiceProviderConfig discovered, Ready explained.
type Reconciler struct {
	client.Client
	// Metrics records orphans and forgets a deleted target's series (nil: not recorded).
	Metrics *metrics.Metrics
	// Flags hands the identities a sweep found out of step to the identity controller.
	Flags                    *targets.SweepFlags
	Kind                     string // scimv1.KindScimTarget or scimv1.KindClusterScimTarget
	Clients                  connect.ClientBuilder
	Recorder                 recorder.EventRecorder
	ClusterResourceNamespace string
	// ClusterID is the externalId prefix that marks this cluster's accounts (orphan scan).
	ClusterID string
	// Breaker is shared with the identity controller.
	Breaker *breaker.Breaker
	// Deprovisioner takes orphaned accounts away (shared with the identity controller).
	Deprovisioner *account.Deprovisioner
	// Clock tells the time of probes and orphan scans (nil: the real clock).
	Clock clock.PassiveClock

	// Credentials keeps the credential snapshots.
	Credentials *connect.CredentialStore
	// CredentialRecheck is how often the credentials of a Ready target are read again, so that
	// a rotation is probed (and snapshotted) within it; it also bounds the backoff of a target
	// that failed (connect.DefaultCredentialRecheck when zero).
	CredentialRecheck time.Duration
	// memory is what this process remembers of targets (memory.go).
	memory memory
}

// credentialsVersioner is a connect.ClientBuilder that tells which credentials a target's client is
// built from (connect.SecretClientBuilder).
type credentialsVersioner interface {
	CredentialsVersion(ctx context.Context, t *targets.Target) (string, error)
}

func (r *Reconciler) recheck() time.Duration {
	if r.CredentialRecheck > 0 {
		return r.CredentialRecheck
	}
	return connect.DefaultCredentialRecheck
}

// +kubebuilder:rbac:groups=scim.nhi.dev,resources=scimtargets;clusterscimtargets,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=scimtargets/status;clusterscimtargets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=scimtargets/finalizers;clusterscimtargets/finalizers,verbs=update
// Secrets: only the Secrets targets reference are read, by name (get), never listed or watched
// (RBAC cannot tell a metadata-only list from a list of the data); written, and listed, only in
// the cluster-resource namespace: the credential snapshots (a namespaced Role there).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=list;create;update;delete

func (r *Reconciler) newObject() client.Object {
	obj, err := scimv1.NewGenericTarget(r.Kind)
	if err != nil {
		panic(err) // Setup passes the two kinds only
	}
	return obj.(client.Object)
}

func (r *Reconciler) view(o client.Object) *targets.Target {
	return targets.OfObject(o, r.ClusterResourceNamespace)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	obj := r.newObject()
	if err := r.Get(ctx, req.NamespacedName, obj); apierrors.IsNotFound(err) {
		// Gone without our finalizer's clean-up (removed by hand, or never added): forget it all
		// the same. A target that never existed costs nothing here.
		r.forget(targets.Key(r.Kind, req.Namespace, req.Name))
		return ctrl.Result{}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if obj.GetDeletionTimestamp().IsZero() && !controllerutil.ContainsFinalizer(obj, scimv1.InUseFinalizer) {
		patch := status.FinalizersPatch(obj.GetFinalizers())
		controllerutil.AddFinalizer(obj, scimv1.InUseFinalizer)
		if err := r.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	base := obj.DeepCopyObject().(client.Object)
	t := r.view(obj)
	released := false
	defer func() {
		if released || equality.Semantic.DeepEqual(r.view(base).Status, t.Status) {
			return
		}
		// Optimistic lock: a stale cached base would merge this scan's report into the last one.
		if err := status.Patch(ctx, r, obj, base, true); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("patching status: %w", err))
		}
	}()
	if !obj.GetDeletionTimestamp().IsZero() {
		res, released, retErr = r.reconcileDelete(ctx, t)
		return res, retErr
	}
	return r.reconcileNormal(ctx, t)
}

// validDurations reports a duration of the spec that does not parse (one stored before the
// API server validated it).
func validDurations(spec *scimv1.ScimTargetSpec) error {
	check := func(field string, d *scimv1.Duration) error {
		if d == nil {
			return nil
		}
		if _, err := d.Parse(); err != nil {
			return fmt.Errorf("spec.%s: %w", field, err)
		}
		return nil
	}
	var interval, breaker *scimv1.Duration
	if spec.Orphans != nil {
		interval = spec.Orphans.Interval
	}
	if spec.CircuitBreaker != nil {
		breaker = spec.CircuitBreaker.Interval
	}
	return errors.Join(check("resyncInterval", spec.ResyncInterval), check("orphans.interval", interval),
		check("circuitBreaker.interval", breaker))
}

// reconcileNormal refreshes the identity count and the breaker state, probes the endpoint
// when due, and scans for orphans when due.
func (r *Reconciler) reconcileNormal(ctx context.Context, t *targets.Target) (ctrl.Result, error) {
	if err := validDurations(t.Spec); err != nil {
		// Stored before the API server validated it: say so, and use nothing of this spec.
		gen := t.Object.GetGeneration()
		status.Stall(&t.Status.Conditions, &t.Status.ObservedGeneration, gen, scimv1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, nil
	}
	count, err := r.countIdentities(ctx, t)
	if err != nil {
		return ctrl.Result{}, err
	}
	t.Status.Identities = count
	if err := r.summarizePlan(ctx, t); err != nil {
		return ctrl.Result{}, err
	}
	breakerWait := r.breakerStatus(t)
	res, err := r.probeIfDue(ctx, t)
	if err != nil || !meta.IsStatusConditionTrue(t.Status.Conditions, scimv1.ConditionReady) {
		return res, err
	}
	if err := r.snapshotCredentials(ctx, t); err != nil {
		return ctrl.Result{}, err
	}
	// Sweeps run on their own workers (SweepReconciler).
	t.Status.Adaptations = dialect.Adaptations(t, r.Deprovisioner.Dialects.All(t.Key()))
	// Secrets are not watched: a Ready target's credentials are read again within the
	// recheck, and a rotation probed and snapshotted.
	for _, d := range []time.Duration{breakerWait, r.recheck()} {
		if d > 0 && (res.RequeueAfter == 0 || d < res.RequeueAfter) {
			res.RequeueAfter = d
		}
	}
	return res, nil
}

// snapshotCredentials keeps the credentials of a Ready target for its last deprovisioning: its
// Secrets may be deleted before its accounts are (a namespace being deleted).
func (r *Reconciler) snapshotCredentials(ctx context.Context, t *targets.Target) error {
	memo := fmt.Sprintf("%s@%d", r.secretsVersion(ctx, t), t.Object.GetGeneration())
	key := t.Key() + "/" + string(t.Object.GetUID())
	if last, ok := r.memory.snapshotted.Load(key); ok && last == memo {
		return nil
	}
	if err := r.Credentials.Snapshot(ctx, t); err != nil {
		return err
	}
	r.memory.snapshotted.Store(key, memo)
	return nil
}

// breakerStatus puts an open breaker on the target as Stalled=True; it returns when to look again.
func (r *Reconciler) breakerStatus(t *targets.Target) time.Duration {
	gen := t.Object.GetGeneration()
	if r.Breaker == nil {
		return 0
	}
	open, msg, wait := r.Breaker.Open(t)
	if !open {
		meta.RemoveStatusCondition(&t.Status.Conditions, scimv1.ConditionStalled)
		return 0
	}
	if !meta.IsStatusConditionTrue(t.Status.Conditions, scimv1.ConditionStalled) {
		r.Recorder.Eventf(t.Object, nil, "Warning", scimv1.ReasonBreakerOpen, "Deprovision", msg)
	}
	status.Set(&t.Status.Conditions, gen, scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonBreakerOpen, msg)
	return max(wait, time.Second)
}

// probeIfDue probes the endpoint when the spec, the credentials or the readiness changed, or
// the resync interval passed.
func (r *Reconciler) probeIfDue(ctx context.Context, t *targets.Target) (ctrl.Result, error) {
	gen := t.Object.GetGeneration()
	conds := &t.Status.Conditions
	interval := targets.ResyncInterval(t.Spec)

	credentials := r.secretsVersion(ctx, t)
	if last := t.Status.LastProbeTime; last != nil && t.Status.ObservedGeneration == gen &&
		meta.IsStatusConditionTrue(*conds, scimv1.ConditionReady) && r.probedWith(t) == credentials {
		if due := interval - status.Clock(r.Clock).Since(last.Time); due > 0 {
			return ctrl.Result{RequeueAfter: due}, nil // reconcileNormal brings it back within the recheck
		}
	}

	r.warnInsecure(t)
	cfg, err := r.probe(ctx, t)
	now := metav1.NewTime(status.Clock(r.Clock).Now())
	t.Status.LastProbeTime = &now
	t.Status.ObservedGeneration = gen
	if err != nil {
		o := outcome.Classify(err)
		reason := o.Reason
		if reason == scimv1.ReasonRejected || reason == scimv1.ReasonProgressing {
			reason = scimv1.ReasonDiscoveryFailed
		}
		status.Set(conds, gen, scimv1.ConditionReady, metav1.ConditionFalse, reason, err.Error())
		if o.RetryAfter > 0 {
			return ctrl.Result{RequeueAfter: o.RetryAfter}, nil
		}
		if o.Stalled != "" {
			// The endpoint answered but refused discovery; probe again at the resync interval.
			return ctrl.Result{RequeueAfter: kube.Jitter(interval)}, nil
		}
		return ctrl.Result{}, err
	}
	r.memory.probed.Store(t.Key(), credentials)
	t.Status.Capabilities = capabilities(cfg, t.Spec.Compatibility)
	if t.Status.ResourceType, err = r.resourceType(ctx, t); err != nil {
		status.Set(conds, gen, scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDiscoveryFailed, err.Error())
		return ctrl.Result{RequeueAfter: kube.Jitter(interval)}, nil
	}
	status.Set(conds, gen, scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonReady,
		fmt.Sprintf("Endpoint reached, credentials accepted, ServiceProviderConfig parsed (patch=%t, filter=%t, etag=%t)", cfg.Patch, cfg.Filter, cfg.ETag))
	return ctrl.Result{RequeueAfter: kube.Jitter(interval)}, nil
}

func (r *Reconciler) probedWith(t *targets.Target) string {
	v, _ := r.memory.probed.Load(t.Key())
	s, _ := v.(string)
	return s
}

// secretsVersion identifies the credentials the target's client is built from, read again
// when they were read longer than the recheck interval ago.
func (r *Reconciler) secretsVersion(ctx context.Context, t *targets.Target) string {
	v, ok := r.Clients.(credentialsVersioner)
	if !ok {
		return "unknown"
	}
	version, err := v.CredentialsVersion(ctx, t)
	if err != nil {
		return "unreadable" // the probe says why
	}
	return version
}

// reconcileDelete keeps a target while identities still use it, then deletes its credential
// snapshot and releases its own finalizer.
func (r *Reconciler) reconcileDelete(ctx context.Context, t *targets.Target) (ctrl.Result, bool, error) {
	if !controllerutil.ContainsFinalizer(t.Object, scimv1.InUseFinalizer) {
		return ctrl.Result{}, true, nil
	}
	users, err := r.identitiesOf(ctx, t)
	if err != nil {
		return ctrl.Result{}, false, err
	}
	gen := t.Object.GetGeneration()
	if len(users) > 0 {
		t.Status.Identities = int32(len(users))
		shown := users[:min(len(users), 5)]
		msg := fmt.Sprintf("Deletion waits for %d ServiceIdentities still using this target to deprovision (%s)",
			len(users), strings.Join(shown, ", "))
		status.Set(&t.Status.Conditions, gen, scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonInUse, msg)
		return ctrl.Result{}, false, nil // the watch on identities brings us back
	}
	if err := r.Credentials.DeleteSnapshot(ctx, t); err != nil {
		return ctrl.Result{}, false, err
	}
	patch := status.FinalizersPatch(t.Object.GetFinalizers())
	controllerutil.RemoveFinalizer(t.Object, scimv1.InUseFinalizer)
	if err := r.Patch(ctx, t.Object, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, false, fmt.Errorf("removing finalizer: %w", err)
	}
	r.memory.snapshotted.Delete(t.Key() + "/" + string(t.Object.GetUID()))
	r.forget(t.Key())
	return ctrl.Result{}, true, nil
}

// forget drops what this process keeps for a target that is gone: its memos, dialect notes,
// breaker state, client, and every metric series labelled with it.
func (r *Reconciler) forget(key string) {
	r.memory.probed.Delete(key)
	r.memory.runs.stop(key)
	r.memory.sweeps.Delete(key)
	r.Deprovisioner.Dialects.Forget(key)
	if r.Breaker != nil {
		r.Breaker.Forget(key)
	}
	if f, ok := r.Clients.(interface{ Forget(key string) }); ok {
		f.Forget(key) // drop its connections, token cache and rate limiter
	}
	r.Metrics.ForgetTarget(key)
}

func (r *Reconciler) warnInsecure(t *targets.Target) {
	if strings.HasPrefix(t.Spec.Endpoint, "http://") {
		r.Recorder.Eventf(t.Object, nil, "Warning", "InsecureHTTP", "Probe",
			"Endpoint uses plain http (allowInsecureHTTP: true): credentials travel unencrypted; use only for local development")
	}
	if t.Spec.TLS != nil && t.Spec.TLS.InsecureSkipVerify {
		r.Recorder.Eventf(t.Object, nil, "Warning", "InsecureSkipVerify", "Probe",
			"tls.insecureSkipVerify is true: the endpoint's certificate is not verified")
	}
}

// probe reads the ServiceProviderConfig with the target's credentials. The endpoint may not
// require auth for discovery (RFC 7644 §4), so a Users query confirms the credentials too.
func (r *Reconciler) probe(ctx context.Context, t *targets.Target) (*scim.ServiceProviderConfig, error) {
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return nil, err
	}
	cfg, err := c.ServiceProviderConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("discovering %s/ServiceProviderConfig: %w", t.Spec.Endpoint, err)
	}
	if _, err := c.List(ctx, dialect.UsersEndpoint, "", 1, 1); err != nil {
		return nil, fmt.Errorf("checking credentials with a Users query: %w", err)
	}
	return cfg, nil
}

// resourceType resolves what the target's accounts are made as (spec.resourceType against the
// provider's /ResourceTypes).
func (r *Reconciler) resourceType(ctx context.Context, t *targets.Target) (*scimv1.ResourceTypeStatus, error) {
	if dialect.ResolvedFor(t.Status.ResourceType, t.Spec.ResourceType) {
		return t.Status.ResourceType, nil
	}
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return nil, err
	}
	return dialect.ResolveResourceType(ctx, c, t.Spec.ResourceType)
}

func capabilities(cfg *scim.ServiceProviderConfig, compat *scimv1.Compatibility) *scimv1.Capabilities {
	b := func(v bool) *bool { return &v }
	maxResults := int32(cfg.MaxResults)
	caps := &scimv1.Capabilities{
		Patch: b(cfg.Patch), Filter: b(cfg.Filter), ETag: b(cfg.ETag), Bulk: b(cfg.Bulk), Sort: b(cfg.Sort), MaxResults: &maxResults,
		CursorPaging: b(cfg.CursorPaging),
	}
	if compat != nil && compat.ServiceProviderConfigOverride != nil {
		o := compat.ServiceProviderConfigOverride
		for _, p := range []struct {
			dst **bool
			src *bool
		}{
			{&caps.Patch, o.Patch}, {&caps.Filter, o.Filter}, {&caps.ETag, o.ETag}, {&caps.Bulk, o.Bulk}, {&caps.Sort, o.Sort},
			{&caps.CursorPaging, o.CursorPaging},
		} {
			if p.src != nil {
				*p.dst = b(*p.src)
			}
		}
		if o.MaxResults != nil {
			caps.MaxResults = o.MaxResults
		}
	}
	return caps
}

func (r *Reconciler) countIdentities(ctx context.Context, t *targets.Target) (int32, error) {
	users, err := r.identitiesOf(ctx, t)
	return int32(len(users)), err
}

// identitiesOf lists "namespace/name" of the identities that reference the target or still
// have an account on it.
func (r *Reconciler) identitiesOf(ctx context.Context, t *targets.Target) ([]string, error) {
	list, err := targets.Identities(ctx, r.Client, t.Kind, t.Namespace, t.Name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list.Items))
	for _, si := range list.Items {
		out = append(out, si.Namespace+"/"+si.Name)
	}
	return out, nil
}

// SetupWithManager registers the controller for r.Kind. Secrets are not watched: a Ready
// target is reconciled again within the credential recheck, and a failing one backs off to it
// at most.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(r.newObject(), builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, kube.DeletionProgress{}, kube.AnnotationChanged(scimv1.BreakerReleaseAnnotation)))).
		Watches(&scimv1.ServiceIdentity{}, kube.EnqueueAfter(identityCountDelay, r.targetsOfIdentity),
			builder.WithPredicates(identityUsePredicate{})).
		WatchesRawSource(source.Channel(r.Breaker.Trips(r.Kind), &handler.EnqueueRequestForObject{})).
		// Sweeps run on their own workers (SweepReconciler); a namespace with many targets
		// waiting takes one turn in each round, so it cannot keep another's from becoming Ready.
		WithOptions(controller.Options{MaxConcurrentReconciles: targetWorkers, RateLimiter: kube.CappedRateLimiter(r.recheck()),
			NewQueue: kube.NewNamespaceFairQueue}).
		Named(strings.ToLower(r.Kind)).
		Complete(r)
}

// targetWorkers is how many targets of one kind are reconciled (probed, released) at once.
const targetWorkers = 4

// identityCountDelay gathers the identity events of a burst (a thousand identities applied at
// once) into one target reconcile, instead of a status write per identity: the target's
// in-use finalizer is set when the target is created, so only the count and the release of a
// deleted target wait this long.
const identityCountDelay = time.Second

// targetsOfIdentity maps an identity to the targets of r.Kind it references or has accounts on.
func (r *Reconciler) targetsOfIdentity(_ context.Context, o client.Object) []reconcile.Request {
	si := o.(*scimv1.ServiceIdentity)
	seen := map[string]bool{}
	var reqs []reconcile.Request
	add := func(ref scimv1.TargetReference) {
		if ref.TargetKind() != r.Kind || seen[ref.Name] {
			return
		}
		seen[ref.Name] = true
		key := types.NamespacedName{Name: ref.Name}
		if !ref.ClusterScoped() {
			key.Namespace = si.Namespace
		}
		reqs = append(reqs, reconcile.Request{NamespacedName: key})
	}
	for _, ref := range si.Spec.TargetRefs {
		add(ref)
	}
	for _, e := range si.Status.Targets {
		add(scimv1.TargetReference{Kind: e.Kind, Name: e.Name})
	}
	return reqs
}

// identityUsePredicate passes the identity events that change which targets are in use:
// creation, deletion, a new spec, the start of a deletion, a status entry added or dropped.
type identityUsePredicate struct{ predicate.Funcs }

func (identityUsePredicate) Update(e event.UpdateEvent) bool {
	o, n := e.ObjectOld.(*scimv1.ServiceIdentity), e.ObjectNew.(*scimv1.ServiceIdentity)
	return o.Generation != n.Generation || o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() ||
		len(o.Status.Targets) != len(n.Status.Targets)
}
