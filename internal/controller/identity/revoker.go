package identity

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

// revoker is the fast path of revocation. It runs as its own controller, with its own work
// queue and workers, on the same triggers that start a revocation in the identity controller:
// a workload deleted, an identity's deletion started. It only makes the SCIM calls, through the
// one account.Deprovisioner, and writes nothing to Kubernetes, so a revocation never waits behind a
// backlog of provisioning, resyncs or status writes in the identity controller's queue. The
// identity controller, woken by the same events, then finds the work confirmed and writes the
// status, the Events and the finalizer; it decides the same things from state on every pass, so
// a revocation the revoker never made (a restart, a failover) is made there. When a target
// refuses, the identity controller retries with backoff and reports why in the conditions.
type revoker struct {
	client.Reader
	deprovisioner *account.Deprovisioner
	// retirement tells whether an identity's workload is gone.
	retirement func(context.Context, *scimv1.ServiceIdentity) (string, error)
	// locks serialises the revoker and the identity controller on one identity.
	locks *kube.KeyLocks
	// handOver wakes the identity controller for an identity the revoker could not finish.
	handOver chan<- event.GenericEvent
}

// Reconcile deprovisions an identity that is being deleted, or whose workload was deleted.
func (v revoker) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// Urgent: its SCIM calls may take a target's reserved slots (scim.Slots), so requests of
	// that target that hang elsewhere (provisioning) cannot hold a revocation back.
	si, failed := v.revoke(scim.Urgent(ctx), req)
	if failed {
		// The identity controller retries and reports it in the conditions, now (and outside
		// the identity's lock, which it needs).
		select {
		case v.handOver <- event.GenericEvent{Object: si}:
		case <-ctx.Done():
		}
	}
	return ctrl.Result{}, nil
}

// revoke makes the SCIM calls under the identity's lock; failed reports a target that did not
// confirm.
func (v revoker) revoke(ctx context.Context, req ctrl.Request) (*scimv1.ServiceIdentity, bool) {
	unlock := v.locks.Lock(req.NamespacedName)
	defer unlock()
	si := &scimv1.ServiceIdentity{}
	if err := v.Get(ctx, req.NamespacedName, si); err != nil {
		if apierrors.IsNotFound(err) {
			v.deprovisioner.Forget(req.NamespacedName)
		}
		return nil, false
	}
	if !controllerutil.ContainsFinalizer(si, scimv1.DeprovisionFinalizer) {
		return nil, false
	}
	switch {
	case !si.DeletionTimestamp.IsZero():
		if si.Annotations[scimv1.ForceOrphanAnnotation] == "true" {
			return nil, false
		}
	default:
		// A lookup that fails is left to the identity controller, which retries it.
		if why, err := v.retirement(ctx, si); err != nil || why == "" {
			return nil, false
		}
	}
	failed, _ := v.deprovisioner.Identity(ctx, si, account.Revocation{Cause: account.CauseRetired, Kill: account.Killed(si)})
	if len(failed) > 0 {
		logf.FromContext(ctx).V(1).Info("Fast revocation incomplete; the identity controller takes over", "targets", len(failed))
	}
	return si, len(failed) > 0
}

// setupRevoker registers the revoker's controller.
func (r *Reconciler) setupRevoker(mgr ctrl.Manager) error {
	return r.watchWorkloads(ctrl.NewControllerManagedBy(mgr).Named("revoke"), true).
		Watches(&scimv1.ServiceIdentity{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(deletionStarted{clock: r.Revocations})).
		// A namespace being deleted retires every identity in it at once (ownerRetired).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.allIdentitiesInNamespace),
			builder.WithPredicates(namespaceDeletionStarted{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Complete(revoker{Reader: r.Client, deprovisioner: r.Deprovisioner, retirement: r.ownerRetired, locks: &r.locks, handOver: r.wake})
}

// deletionStarted passes only the update that sets an identity's deletionTimestamp (and
// identities already being deleted when the operator starts), and notes the time for the
// revocation histogram.
type deletionStarted struct {
	predicate.Funcs
	clock *metrics.RevocationClock
}

func (deletionStarted) Create(e event.CreateEvent) bool {
	return !e.Object.GetDeletionTimestamp().IsZero()
}

func (deletionStarted) Delete(event.DeleteEvent) bool { return false }

func (deletionStarted) Generic(event.GenericEvent) bool { return false }

func (p deletionStarted) Update(e event.UpdateEvent) bool {
	started := e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
	if started && p.clock != nil {
		p.clock.Mark(string(e.ObjectNew.GetUID()))
	}
	return started
}

// allIdentitiesInNamespace maps a namespace to every identity in it.
func (r *Reconciler) allIdentitiesInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	list := &scimv1.ServiceIdentityList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Error(err, "Listing the identities of a namespace being deleted", "namespace", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, si := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: si.Namespace, Name: si.Name}})
	}
	return reqs
}
