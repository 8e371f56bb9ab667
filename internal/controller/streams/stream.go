package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/ssf"
	"github.com/nhi-dev/scim-operator/internal/status"
)

// StreamReconciler keeps a SecurityEventStream's status, pushes its verification events, and
// takes its tokens off the outbox when it is deleted.
type StreamReconciler struct {
	*Config
}

// Reconcile implements reconcile.Reconciler.
func (r *StreamReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	st := &scimv1.SecurityEventStream{}
	if err := r.Get(ctx, req.NamespacedName, st); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !st.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(st, OutboxFinalizer) {
			return ctrl.Result{}, nil
		}
		if err := r.dropTokens(ctx, st); err != nil {
			return ctrl.Result{}, err
		}
		patch := status.FinalizersPatch(st.GetFinalizers())
		controllerutil.RemoveFinalizer(st, OutboxFinalizer)
		return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, st, patch))
	}
	if !controllerutil.ContainsFinalizer(st, OutboxFinalizer) {
		patch := status.FinalizersPatch(st.GetFinalizers())
		controllerutil.AddFinalizer(st, OutboxFinalizer)
		if err := r.Patch(ctx, st, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	base := st.DeepCopy()
	pending, err := r.pending(ctx, st)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.Status.Pending = int32(min(pending, 1<<30))
	st.Status.EventsDelivered = ssf.Delivered(st.Spec.EventsRequested)
	st.Status.ObservedGeneration = st.Generation
	r.ready(st, pending)
	verifyErr := r.pushVerification(ctx, st)
	if verifyErr != nil {
		st.Status.LastError = status.Truncate(verifyErr.Error(), 1024)
	}
	if !equality.Semantic.DeepEqual(base.Status, st.Status) {
		if err := status.Patch(ctx, r, st, base, true); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, verifyErr
}

// pending counts st's Pending tokens on the identities.
func (r *StreamReconciler) pending(ctx context.Context, st *scimv1.SecurityEventStream) (int, error) {
	var list scimv1.ServiceIdentityList
	if err := r.List(ctx, &list, client.MatchingFields{ssf.IndexPendingStream: ssf.StreamKey(st)}); err != nil {
		return 0, err
	}
	n := 0
	for i := range list.Items {
		for _, t := range list.Items[i].Status.Targets {
			if t.Revocation == nil {
				continue
			}
			for _, m := range t.Revocation.Streams {
				if m.Stream == ssf.StreamKey(st) && m.UID == string(st.UID) && m.Delivery == scimv1.SecurityEventPending {
					n++
				}
			}
		}
	}
	return n, nil
}

// ready sets Ready: True with the stream's state as reason, False Backlogged once it holds
// MaxPending tokens (no more are recorded until its receiver takes some).
func (r *StreamReconciler) ready(st *scimv1.SecurityEventStream, pending int) {
	maxPending := r.MaxPending
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	was := apimeta.FindStatusCondition(st.Status.Conditions, "Ready")
	backlogged := pending >= maxPending ||
		// Hysteresis: a backlogged stream records again once half its backlog is taken.
		was != nil && was.Reason == ssf.ReasonBacklogged && pending > maxPending/2
	var c metav1.Condition
	failing := ""
	if st.Spec.Delivery.Method == scimv1.StreamPush && pending > 0 {
		failing = r.failure(st.UID)
	}
	switch {
	case failing != "":
		c = metav1.Condition{Status: metav1.ConditionFalse, Reason: "DeliveryFailing", Message: fmt.Sprintf(
			"%d tokens wait; the last push failed: %s", pending, failing)}
		st.Status.LastError = failing
	case backlogged:
		c = metav1.Condition{Status: metav1.ConditionFalse, Reason: ssf.ReasonBacklogged, Message: fmt.Sprintf(
			"%d tokens wait for the receiver (at most %d are held); new revocations are not recorded for this stream until it takes some", pending, maxPending)}
	case ssf.StateOf(st) == scimv1.StreamPaused:
		c = metav1.Condition{Status: metav1.ConditionTrue, Reason: "Paused", Message: "paused: tokens are recorded and held, not delivered" + reasonOf(st)}
	case ssf.StateOf(st) == scimv1.StreamDisabled:
		c = metav1.Condition{Status: metav1.ConditionTrue, Reason: "Disabled", Message: "disabled: no token is recorded or delivered" + reasonOf(st)}
	case st.Spec.Delivery.Method == scimv1.StreamPush:
		c = metav1.Condition{Status: metav1.ConditionTrue, Reason: "Enabled", Message: "tokens are pushed to " + st.Spec.Delivery.EndpointURL}
	default:
		c = metav1.Condition{Status: metav1.ConditionTrue, Reason: "Enabled", Message: "tokens wait at the poll endpoint until the receiver acknowledges them"}
	}
	c.Type, c.ObservedGeneration = "Ready", st.Generation
	apimeta.SetStatusCondition(&st.Status.Conditions, c)
}

func reasonOf(st *scimv1.SecurityEventStream) string {
	if st.Spec.StateReason == "" {
		return ""
	}
	return " (" + st.Spec.StateReason + ")"
}

// pushVerification pushes the waiting verification event of an enabled push stream and
// clears it once accepted.
func (r *StreamReconciler) pushVerification(ctx context.Context, st *scimv1.SecurityEventStream) error {
	if st.Status.Verification == nil || st.Spec.Delivery.Method != scimv1.StreamPush || ssf.StateOf(st) != scimv1.StreamEnabled {
		return nil
	}
	tok, err := r.Server.VerificationToken(st)
	if err != nil {
		return err
	}
	tx, err := r.transmitter(ctx, st)
	if err != nil {
		return err
	}
	if err := tx.Send(ctx, tok); err != nil {
		if !secevent.IsRetryable(err) || errors.Is(err, connect.ErrAddressNotAllowed) {
			st.Status.Verification = nil // refused: sending it again will not change the answer
		}
		return fmt.Errorf("verification event: %w", err)
	}
	st.Status.Verification, st.Status.LastError = nil, ""
	return nil
}

// SetupWithManager registers the stream reconciler; a change of an identity's stream tokens
// updates the streams' counts.
func (r *StreamReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.changed = make(chan event.GenericEvent, 1024)
	return ctrl.NewControllerManagedBy(mgr).
		For(&scimv1.SecurityEventStream{}).
		Watches(&scimv1.ServiceIdentity{}, handler.EnqueueRequestsFromMapFunc(streamsOf)).
		// A push failing, or succeeding again, on an identity's pass.
		WatchesRawSource(source.Channel(r.changed, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{
			// A push of a verification event waits on the receiver: enough workers, and
			// namespaces taken in turn, that one tenant's slow receivers do not hold the others.
			MaxConcurrentReconciles: 4,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](baseDelay, maxDelay),
			NewQueue:                kube.NewNamespaceFairQueue,
		}).
		Named("securityeventstream").
		Complete(r)
}

// streamsOf are the streams named on an identity's outbox.
func streamsOf(_ context.Context, o client.Object) []reconcile.Request {
	si, ok := o.(*scimv1.ServiceIdentity)
	if !ok {
		return nil
	}
	var keys []string
	for i := range si.Status.Targets {
		if ev := si.Status.Targets[i].Revocation; ev != nil {
			for _, m := range ev.Streams {
				if !slices.Contains(keys, m.Stream) {
					keys = append(keys, m.Stream)
				}
			}
		}
	}
	out := make([]reconcile.Request, 0, len(keys))
	for _, k := range keys {
		ns, name, ok := cutKey(k)
		if ok {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}})
		}
	}
	return out
}

func cutKey(k string) (string, string, bool) {
	ns, name, ok := strings.Cut(k, "/")
	return ns, name, ok && ns != "" && name != ""
}
