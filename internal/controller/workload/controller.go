// Package workload makes a ServiceIdentity for each workload (ServiceAccount, Deployment,
// StatefulSet, CronJob) annotated with scim.nhi.dev/targets, controlled by the workload so that
// its deletion revokes the accounts.
package workload

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/metrics"
)

// Reconciler keeps a ServiceIdentity named <kind-lowercase>-<name>, controlled by the
// workload, in step with the workload's scim.nhi.dev/* annotations. It watches metadata only.
type Reconciler struct {
	client.Client
	GVK      schema.GroupVersionKind
	Recorder recorder.EventRecorder
	// Revocations notes workload deletions for the revocation histogram.
	Revocations *metrics.RevocationClock
}

// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities,verbs=create;delete

func (r *Reconciler) newObject() *metav1.PartialObjectMetadata {
	o := &metav1.PartialObjectMetadata{}
	o.SetGroupVersionKind(r.GVK)
	return o
}

// mergeSpec is the identity's spec from the annotations' spec: the annotations own what they
// can express; what they cannot (the incident kill switch, a review interval, an explicit
// expiry) stays as set on the identity, so `kubectl scim revoke` of a workload's identity is not
// undone by this reconcile. The schema's default userType is kept, to avoid a diff.
func mergeSpec(annotated, current scimv1.ServiceIdentitySpec) scimv1.ServiceIdentitySpec {
	if annotated.UserType == "" {
		annotated.UserType = current.UserType
	}
	annotated.Suspend = current.Suspend
	if annotated.Review == nil {
		annotated.Review = current.Review
	}
	if annotated.ExpiresAt == nil && annotated.TTL == nil {
		annotated.ExpiresAt = current.ExpiresAt
	}
	return annotated
}

// IdentityName is the name of the ServiceIdentity made for a workload.
func IdentityName(kind, name string) string { return strings.ToLower(kind) + "-" + name }

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	w := r.newObject()
	if err := r.Get(ctx, req.NamespacedName, w); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	name := IdentityName(r.GVK.Kind, w.Name)
	existing := &scimv1.ServiceIdentity{}
	err := r.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: name}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	found := err == nil
	ours := found && metav1.IsControlledBy(existing, w)

	value, asked := w.Annotations[scimv1.AnnotationTargets]
	if !asked || !w.DeletionTimestamp.IsZero() {
		if ours && existing.DeletionTimestamp.IsZero() {
			// Annotation removed: the identity goes, and its finalizer deprovisions the account.
			if err := r.Delete(ctx, existing); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
			r.Recorder.Eventf(w, existing, "Normal", "IdentityDeleted", "Deprovision",
				"Annotation %s removed: ServiceIdentity %s deleted", scimv1.AnnotationTargets, name)
		}
		return ctrl.Result{}, nil
	}
	spec, err := specFromAnnotations(value, w.Annotations)
	if err != nil {
		r.Recorder.Eventf(w, nil, "Warning", "InvalidAnnotation", "Provision", "%v; no ServiceIdentity was created or changed", err)
		return ctrl.Result{}, nil
	}
	if found && !ours {
		r.Recorder.Eventf(w, existing, "Warning", "NameTaken", "Provision",
			"ServiceIdentity %s/%s exists and is not controlled by this %s; rename one of them", w.Namespace, name, r.GVK.Kind)
		return ctrl.Result{}, nil
	}
	si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: name}}
	op, err := controllerutil.CreateOrUpdate(ctx, r.Client, si, func() error {
		si.Spec = mergeSpec(*spec, si.Spec)
		return controllerutil.SetControllerReference(w, si, r.Scheme())
	})
	if err != nil {
		r.Recorder.Eventf(w, nil, "Warning", "IdentityFailed", "Provision", "Could not write ServiceIdentity %s: %v", name, err)
		return ctrl.Result{}, err
	}
	if op != controllerutil.OperationResultNone {
		reason := map[controllerutil.OperationResult]string{controllerutil.OperationResultCreated: "IdentityCreated"}[op]
		if reason == "" {
			reason = "IdentityUpdated"
		}
		r.Recorder.Eventf(w, si, "Normal", reason, "Provision", "ServiceIdentity %s %s from the scim.nhi.dev/* annotations", name, op)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager watches the workload kind's metadata and the identities it controls.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("workload-"+strings.ToLower(r.GVK.Kind)).
		For(r.newObject(), builder.WithPredicates(workloadPredicate{clock: r.Revocations, kind: r.GVK.Kind})).
		// Owns() resolves the owner type through the scheme, which has no kind for metadata-only
		// objects; map the controller reference by hand.
		Watches(&scimv1.ServiceIdentity{}, handler.EnqueueRequestsFromMapFunc(r.controllerOf)).
		Complete(r)
}

func (r *Reconciler) controllerOf(_ context.Context, o client.Object) []reconcile.Request {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != r.GVK.Kind || ref.APIVersion != r.GVK.GroupVersion().String() {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}}
}

func hasScimAnnotation(o client.Object) bool {
	for k := range o.GetAnnotations() {
		if strings.HasPrefix(k, "scim.nhi.dev/") {
			return true
		}
	}
	return false
}

// workloadPredicate passes workloads that carry (or just lost) scim.nhi.dev/* annotations;
// the many workloads without them cost nothing beyond their metadata in the cache.
type workloadPredicate struct {
	predicate.Funcs
	clock *metrics.RevocationClock
	kind  string
}

func (workloadPredicate) Create(e event.CreateEvent) bool { return hasScimAnnotation(e.Object) }

// Delete records when an annotated workload went; garbage collection deletes its identity.
func (p workloadPredicate) Delete(e event.DeleteEvent) bool {
	if p.clock != nil && hasScimAnnotation(e.Object) {
		p.clock.Mark(metrics.WorkloadKey(e.Object.GetNamespace(), p.kind, e.Object.GetName()))
	}
	return false
}
func (workloadPredicate) Update(e event.UpdateEvent) bool {
	return hasScimAnnotation(e.ObjectOld) || hasScimAnnotation(e.ObjectNew)
}
func (workloadPredicate) Generic(e event.GenericEvent) bool { return hasScimAnnotation(e.Object) }
