// Package secevents delivers the Security Event Tokens of confirmed revocations: the identity's
// status is the outbox, and this controller sends what it holds until the receiver accepts it.
package secevents

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

const (
	// DefaultMaxAge is how long a Security Event Token is sent again before it is
	// given up (--security-events-max-age).
	DefaultMaxAge = secevent.DefaultMaxAge
	// securityEventBaseDelay and securityEventMaxDelay bound the backoff between attempts the
	// receiver gave no Retry-After for.
	securityEventBaseDelay = time.Second
	securityEventMaxDelay  = 5 * time.Minute
)

// Reconciler delivers the Security Event Tokens recorded on identities' status.
// Each revocation's evidence (status.targets[].revocation) is the token's outbox: the
// deprovisioner records its jti and subject, Pending, in the same status write as the
// evidence; this controller sends it from there, the same jti at every attempt, until the
// receiver accepts or refuses it, and records the outcome. The outbox survives a restart (the
// first list of identities brings every Pending token back) and the identity's deletion (the
// SecurityEventsFinalizer keeps it until no token is Pending; the revocation itself never
// waits for the receiver). Attempts are scheduled on the controller's delay queue: a
// Retry-After is waited out with AddAfter (up to MaxWait, then asked again), never by a
// sleeping worker and never by dropping the token; the queue takes namespaces in turn.
type Reconciler struct {
	client.Client
	Publisher *secevent.Publisher
	Recorder  recorder.EventRecorder
	// Clock tells a token's age (nil: the real clock).
	Clock clock.PassiveClock
	// MaxAge: a token not accepted this long after the revocation was confirmed is given up
	// (a Warning Event, outcome given_up), so a receiver that is gone for good does not hold
	// identities for ever. DefaultMaxAge when zero.
	MaxAge time.Duration
	// MaxWait bounds the wait a receiver's Retry-After schedules before the next attempt
	// (secevent.MaxRetryAfter when zero); the token stays Pending whatever the wait.
	MaxWait time.Duration
	// MaxConcurrentReconciles bounds the attempts in flight.
	MaxConcurrentReconciles int

	// notBefore is when the receiver's last Retry-After ends.
	mu        sync.Mutex
	notBefore time.Time
	// accepted remembers the jtis this process saw accepted (bounded), until their status
	// write is sure to have landed.
	accepted *lru.Cache
}

// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=serviceidentities/finalizers,verbs=update

// Reconcile sends the identity's Pending tokens and, once none is left on an identity being
// deleted whose accounts were revoked, releases SecurityEventsFinalizer.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	si := &scimv1.ServiceIdentity{}
	if err := r.Get(ctx, req.NamespacedName, si); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := si.DeepCopy()
	res, sendErr := r.send(ctx, si)
	if !equality.Semantic.DeepEqual(base.Status, si.Status) {
		// Optimistically locked: targets is an atomic list the identity controller writes too.
		if err := status.Patch(ctx, r, si, base, true); err != nil {
			return ctrl.Result{}, errors.Join(sendErr, fmt.Errorf("recording the delivery of security events: %w", err))
		}
	}
	if sendErr != nil || res.RequeueAfter > 0 {
		return res, sendErr
	}
	// The deprovision finalizer goes only after the evidence, and the tokens with it, are on
	// status: before that there is nothing here to wait for yet. Tokens recorded for Shared
	// Signals streams hold it too (the streams controller releases it then).
	if !si.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(si, scimv1.DeprovisionFinalizer) &&
		controllerutil.ContainsFinalizer(si, scimv1.SecurityEventsFinalizer) && !si.HoldsSecurityEvents() {
		patch := status.FinalizersPatch(si.GetFinalizers())
		controllerutil.RemoveFinalizer(si, scimv1.SecurityEventsFinalizer)
		if err := r.Patch(ctx, si, patch); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("removing finalizer %s: %w", scimv1.SecurityEventsFinalizer, err)
		}
	}
	return ctrl.Result{}, nil
}

// send makes one attempt for each Pending token of si, and records each outcome on si. A
// retryable failure stops the pass (the receiver is down or throttling): with a Retry-After
// the next pass is scheduled after it, otherwise the error hands it to the queue's backoff.
func (r *Reconciler) send(ctx context.Context, si *scimv1.ServiceIdentity) (ctrl.Result, error) {
	now := status.Clock(r.Clock).Now()
	maxAge := r.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	for i := range si.Status.Targets {
		e := &si.Status.Targets[i]
		ev := e.Revocation
		if !ev.SecurityEventUndelivered() {
			continue
		}
		target := targets.Key(e.Kind, si.Namespace, e.Name)
		if now.Sub(ev.ConfirmedAt.Time) > maxAge {
			ev.SecurityEventDelivery = scimv1.SecurityEventGivenUp
			r.Publisher.GaveUp()
			r.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonSecurityEventGivenUp, "SecurityEvent",
				"Security Event Token %s for the revocation on %s was not accepted within %s; it is no longer sent",
				ev.SecurityEvent, target, maxAge)
			continue
		}
		if at, ok := r.accepted.Get(ev.SecurityEvent); ok {
			// Accepted by an earlier pass whose status write lost a conflict (or was
			// overwritten by an older copy): record it, do not send it twice.
			ev.SecurityEventDelivery = scimv1.SecurityEventDelivered
			ev.SecurityEventDeliveredAt = &metav1.Time{Time: at.(time.Time)}
			continue
		}
		if wait := r.waitLeft(now); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil // the receiver asked to wait: no identity jumps that
		}
		if res, stop, err := r.deliver(ctx, si, ev, target, now); stop {
			return res, err
		}
	}
	return ctrl.Result{}, nil
}

// waitUntil holds every attempt until t: a Retry-After is the receiver's, not one token's.
func (r *Reconciler) waitUntil(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.After(r.notBefore) {
		r.notBefore = t
	}
}

// waitLeft is how long the receiver asked to be left alone still.
func (r *Reconciler) waitLeft(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notBefore.Sub(now)
}

func (r *Reconciler) maxWait() time.Duration {
	if r.MaxWait > 0 {
		return r.MaxWait
	}
	return secevent.MaxRetryAfter
}

// deliver sends one Security Event Token and records the receiver's answer on ev; stop says
// the pass ends here (the receiver asked to wait, or will be asked again on the backoff).
func (r *Reconciler) deliver(ctx context.Context, si *scimv1.ServiceIdentity, ev *scimv1.RevocationEvidence, target string,
	now time.Time) (ctrl.Result, bool, error) {
	log := logf.FromContext(ctx)
	err := r.Publisher.Send(ctx, ev.SecurityEvent, securityEventOf(si, ev))
	switch verdict, wait := secevent.Judge(ctx, err, r.maxWait()); verdict {
	case secevent.Accepted:
		r.accepted.Add(ev.SecurityEvent, now)
		ev.SecurityEventDelivery = scimv1.SecurityEventDelivered
		ev.SecurityEventDeliveredAt = &metav1.Time{Time: now}
		log.V(1).Info("Security event delivered", "target", target, "jti", ev.SecurityEvent)
	case secevent.Canceled:
		return ctrl.Result{}, true, ctx.Err()
	case secevent.WaitAndRetry:
		r.waitUntil(now.Add(wait))
		log.Info("Security event receiver asked to wait", "target", target, "jti", ev.SecurityEvent, "next", wait)
		return ctrl.Result{RequeueAfter: wait}, true, nil
	case secevent.Retry:
		return ctrl.Result{}, true, fmt.Errorf("security event %s for %s: %w", ev.SecurityEvent, target, err)
	default:
		// Refused (400, 401, 403, a redirect), or a token that cannot be built: sending the
		// same one again will not change the answer. A duplicate jti (the receiver has it from
		// an attempt whose answer was lost) is refused too, and lands here.
		ev.SecurityEventDelivery = scimv1.SecurityEventRefused
		r.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonSecurityEventRefused, "SecurityEvent",
			"Security Event Token %s for the revocation on %s was refused: %s", ev.SecurityEvent, target, status.Truncate(err.Error(), 512))
	}
	return ctrl.Result{}, false, nil
}

// securityEventOf is the event a revocation's evidence holds: its type from the result, its
// time the confirmation's, its txn the identity's UID (shared by the tokens of one identity).
func securityEventOf(si *scimv1.ServiceIdentity, ev *scimv1.RevocationEvidence) secevent.Event {
	typ := secevent.AccountPurged
	if ev.Result == scimv1.RevocationInactive {
		typ = secevent.AccountDisabled
	}
	return secevent.Event{Type: typ, Subject: secevent.URI(ev.SecurityEventSubject), Time: ev.ConfirmedAt.Time, Txn: string(si.UID)}
}

// hasUndeliveredSecurityEvent reports whether a token on si's status is still to be sent.
func hasUndeliveredSecurityEvent(si *scimv1.ServiceIdentity) bool {
	for i := range si.Status.Targets {
		if si.Status.Targets[i].Revocation.SecurityEventUndelivered() {
			return true
		}
	}
	return false
}

// SetupWithManager registers the controller: it sees identities with a Pending token, and
// identities being deleted that carry its finalizer.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.accepted = lru.New(4096)
	return ctrl.NewControllerManagedBy(mgr).
		For(&scimv1.ServiceIdentity{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			si, ok := o.(*scimv1.ServiceIdentity)
			return ok && (hasUndeliveredSecurityEvent(si) ||
				!si.DeletionTimestamp.IsZero() && controllerutil.ContainsFinalizer(si, scimv1.SecurityEventsFinalizer))
		}))).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1),
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](
				securityEventBaseDelay, securityEventMaxDelay),
			NewQueue: kube.NewNamespaceFairQueue,
		}).
		Named("securityevent").
		Complete(r)
}
