package kube

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// EnqueueAfter enqueues what fn maps an event's object to, d later. The work queue keeps the
// earliest time of an item already waiting, so every event of a burst lands in one reconcile.
func EnqueueAfter(d time.Duration, fn handler.MapFunc) handler.EventHandler {
	add := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range fn(ctx, o) {
			q.AddAfter(req, d)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}

// AnnotationChanged passes updates that change the value of one annotation.
func AnnotationChanged(key string) predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetAnnotations()[key] != e.ObjectNew.GetAnnotations()[key]
	}}
}

// AnnotationsChangedExcept passes updates that change any annotation but those named: the
// ones a controller writes itself need not wake it again.
func AnnotationsChangedExcept(keys ...string) predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()
		for k, v := range n {
			if ov, ok := o[k]; (!ok || ov != v) && !slices.Contains(keys, k) {
				return true
			}
		}
		for k := range o {
			if _, ok := n[k]; !ok && !slices.Contains(keys, k) {
				return true
			}
		}
		return false
	}}
}

// Jitter spreads resyncs by up to +10%.
func Jitter(d time.Duration) time.Duration { return wait.Jitter(d, 0.1) }

// DeletionProgress passes every event but the updates that neither start an object's deletion
// nor change its finalizers while it is being deleted.
type DeletionProgress struct{ predicate.Funcs }

// Update implements predicate.Predicate.
func (DeletionProgress) Update(e event.UpdateEvent) bool {
	o, n := e.ObjectOld, e.ObjectNew
	return o.GetDeletionTimestamp().IsZero() != n.GetDeletionTimestamp().IsZero() ||
		(!n.GetDeletionTimestamp().IsZero() && len(o.GetFinalizers()) != len(n.GetFinalizers()))
}

// OwnersChanged passes updates that change ownerReferences: the garbage collector
// orphaning an identity whose workload was deleted (propagation Orphan) wakes the identity
// controller at once to record the revocation, instead of after OwnerRetiredGrace.
type OwnersChanged struct{ predicate.Funcs }

func (OwnersChanged) Create(event.CreateEvent) bool { return false }

func (OwnersChanged) Delete(event.DeleteEvent) bool { return false }

func (OwnersChanged) Generic(event.GenericEvent) bool { return false }

func (OwnersChanged) Update(e event.UpdateEvent) bool {
	return !equality.Semantic.DeepEqual(e.ObjectOld.GetOwnerReferences(), e.ObjectNew.GetOwnerReferences())
}
