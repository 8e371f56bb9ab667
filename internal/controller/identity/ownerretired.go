package identity

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/workloads"
)

// OwnerRetiredGrace is how long the identity controller leaves an identity whose workload was
// deleted to the garbage collector before it records the revocation on the identity itself.
// A mass retirement so costs one Kubernetes write per identity (the finalizer) instead of
// three (status, Event, finalizer), while the accounts go at once through the revoker.
const OwnerRetiredGrace = 5 * time.Second

// DefaultNamespaceGrace is how long, by default, the identity controller leaves an identity
// whose namespace is being deleted, its accounts revoked, to the namespace controller before
// it records the revocation on the identity itself (Reconciler.NamespaceGrace). The namespace
// controller marks every object of the namespace for deletion, at the API server's pace (one
// object at a time: 10,000 identities took 95 s on two cores), and the identity's deletion then
// records the revocation with one Event and the finalizer's release. A namespace's deletion so
// costs two Kubernetes writes per identity instead of four, and none of them while accounts
// are being revoked. An identity still there after the grace (no namespace controller running)
// gets its status and Event; so does one whose kill switch is set, at once.
const DefaultNamespaceGrace = 5 * time.Minute

// workloadEvents enqueues the identities of a workload: on creation (spec.workloadRef waits
// for it) and on deletion, which is also noted so the accounts are revoked at once instead of
// after the garbage collector has deleted the identity.
type workloadEvents struct {
	r    *Reconciler
	kind string
	// onlyRetired ignores creations (the revoker's queue).
	onlyRetired bool
}

func (h workloadEvents) enqueue(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request], retired bool) {
	list := &scimv1.ServiceIdentityList{}
	if err := h.r.List(ctx, list, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{workloads.IdentityIndex: h.kind + "/" + o.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "Listing identities of a workload")
		return
	}
	if retired && len(list.Items) > 0 && h.r.Revocations != nil {
		h.r.Revocations.Mark(metrics.WorkloadKey(o.GetNamespace(), h.kind, o.GetName()))
	}
	for _, si := range list.Items {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: si.Namespace, Name: si.Name}}
		if retired {
			h.r.markRetired(si.UID, o.GetUID())
		}
		switch {
		case !retired || h.onlyRetired:
			q.Add(req)
		default:
			// The revoker deprovisions now. The identity controller records it once the garbage
			// collector has started deleting the identity (which wakes it at once), or after
			// OwnerRetiredGrace when the identity stays (orphan propagation, no collector).
			q.AddAfter(req, OwnerRetiredGrace)
		}
	}
}

func (h workloadEvents) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if !h.onlyRetired {
		h.enqueue(ctx, e.Object, q, false)
	}
}

func (h workloadEvents) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	// Foreground deletion keeps the workload, with a deletionTimestamp, until its dependents go.
	if e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero() {
		h.enqueue(ctx, e.ObjectNew, q, true)
	}
}

func (h workloadEvents) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(ctx, e.Object, q, true)
}

func (h workloadEvents) Generic(context.Context, event.GenericEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

var _ handler.EventHandler = workloadEvents{}

// watchWorkloads adds metadata-only watches of every workload kind, handled by workloadEvents.
func (r *Reconciler) watchWorkloads(b *builder.TypedBuilder[reconcile.Request], onlyRetired bool) *builder.TypedBuilder[reconcile.Request] {
	for _, gvk := range scimv1.WorkloadKinds {
		w := &metav1.PartialObjectMetadata{}
		w.SetGroupVersionKind(gvk)
		b = b.WatchesMetadata(w, workloadEvents{r: r, kind: gvk.Kind, onlyRetired: onlyRetired})
	}
	return b
}

// markRetired notes the deleted workload's UID for an identity (no lookup needed later),
// unless a retirement of the identity was already confirmed.
func (r *Reconciler) markRetired(identity, workload types.UID) {
	for {
		v, loaded := r.memory.retired.LoadOrStore(identity, retirement{workload: workload})
		if !loaded {
			return
		}
		if v.(retirement).confirmed() || r.memory.retired.CompareAndSwap(identity, v, retirement{workload: workload}) {
			return
		}
	}
}

// ownerRetired reports that a workload owning the identity is gone. The watch's deletion event
// says so at once (the fast path); otherwise it is decided from state on every call: the
// owner named by the ownerReference, or recorded on status.workload, no longer exists under
// its UID. An identity already revoked for that reason stays revoked until the garbage
// collector deletes it.
func (r *Reconciler) ownerRetired(ctx context.Context, si *scimv1.ServiceIdentity) (string, error) {
	if c := meta.FindStatusCondition(si.Status.Conditions, scimv1.ConditionReady); c != nil && c.Reason == scimv1.ReasonOwnerDeleted {
		return c.Message, nil
	}
	if why := r.retiredByEvent(si); why != "" {
		return why, nil
	}
	if why, _, err := r.namespaceTerminating(ctx, si.Namespace); why != "" || err != nil {
		return why, err
	}
	w := workloads.OwnerOf(si)
	if w == nil {
		return "", nil
	}
	why, err := workloads.Gone(ctx, r.Client, r.APIReader, si.Namespace, w)
	if why != "" {
		r.memory.retired.Store(si.UID, retirement{why: why}) // confirmed: stays revoked whatever happens to the ownerReference
	}
	return why, err
}

// retiredByEvent is the fast path: the watch delivered the deletion of the very object (same
// UID) an ownerReference or status.workload names.
func (r *Reconciler) retiredByEvent(si *scimv1.ServiceIdentity) string {
	v, marked := r.memory.retired.Load(si.UID)
	if !marked {
		return ""
	}
	seen := v.(retirement)
	if seen.confirmed() {
		return seen.why // confirmed earlier; the garbage collector may since have orphaned the identity
	}
	owners := si.OwnerReferences
	// The owner on record (or stamped at creation), whose ownerReference may be gone already.
	for _, w := range []*scimv1.WorkloadOwner{si.Status.Workload, workloads.Stamped(si)} {
		if w != nil {
			owners = append(slices.Clip(owners), metav1.OwnerReference{Kind: w.Kind, Name: w.Name, UID: w.UID})
		}
	}
	for _, o := range owners {
		if o.UID == seen.workload {
			why := fmt.Sprintf("%s %s/%s was deleted", o.Kind, si.Namespace, o.Name)
			// Remembered as confirmed: with orphan propagation the collector removes this
			// ownerReference next, and the identity must stay revoked, not be provisioned again.
			r.memory.retired.Store(si.UID, retirement{workload: seen.workload, why: why})
			return why
		}
	}
	r.memory.retired.Delete(si.UID) // a namesake of the owner went, not the owner
	return ""
}

// reconcileOwnerRetired revokes every account now; the garbage collector deletes the identity
// next, and its finalizer then has nothing left to do.
func (r *Reconciler) reconcileOwnerRetired(si *scimv1.ServiceIdentity, outcomes map[string]outcome.Outcome, why string) (ctrl.Result, error) {
	if len(outcomes) > 0 {
		return r.deprovisionBlocked(si, outcomes, why+"; deprovisioning")
	}
	gen := si.Generation
	msg := why
	if c := meta.FindStatusCondition(si.Status.Conditions, scimv1.ConditionReady); c == nil || c.Reason != scimv1.ReasonOwnerDeleted {
		msg = why + "; accounts deprovisioned per deletionPolicy, the garbage collector deletes this identity"
		if planned := plannedRevocations(si); len(planned) > 0 {
			msg = why + "; Observe mode: nothing was written (planned: " + strings.Join(planned, "; ") +
				"), the garbage collector deletes this identity"
		}
		r.Recorder.Eventf(si, nil, "Normal", scimv1.ReasonOwnerDeleted, "Deprovision", msg)
	}
	status.Progress(&si.Status.Conditions, gen, scimv1.ReasonOwnerDeleted, msg, msg)
	si.Status.ObservedGeneration = gen
	return ctrl.Result{}, nil
}

// namespaceTerminating reports an identity whose namespace is being deleted: everything in it
// goes, so its accounts are revoked at once rather than when the namespace controller, which
// deletes a large namespace's objects over minutes, reaches the identity.
// It also returns when the namespace's deletion started.
func (r *Reconciler) namespaceTerminating(ctx context.Context, namespace string) (string, time.Time, error) {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return "", time.Time{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp.IsZero() {
		return "", time.Time{}, nil
	}
	return "namespace " + namespace + " is being deleted", ns.DeletionTimestamp.Time, nil
}

// namespaceGrace reports how much longer an identity whose namespace is being deleted is left
// to the namespace controller before its revocation is recorded on it (0: no longer, its
// namespace is not being deleted, or its kill switch is set: `kubectl scim revoke` waits for
// the status).
func (r *Reconciler) namespaceGrace(ctx context.Context, si *scimv1.ServiceIdentity) time.Duration {
	why, since, err := r.namespaceTerminating(ctx, si.Namespace)
	if why == "" || err != nil || si.Spec.Suspend {
		return 0
	}
	grace := r.NamespaceGrace
	if grace <= 0 {
		grace = DefaultNamespaceGrace
	}
	return max(since.Add(grace).Sub(r.now()), 0)
}

// namespaceDeletionStarted passes the update that sets a namespace's deletionTimestamp.
type namespaceDeletionStarted struct{ predicate.Funcs }

func (namespaceDeletionStarted) Create(event.CreateEvent) bool { return false }
func (namespaceDeletionStarted) Delete(event.DeleteEvent) bool { return false }
func (namespaceDeletionStarted) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
}
