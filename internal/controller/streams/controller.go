// Package streams runs the Shared Signals streams: it pushes the tokens recorded for push
// streams on the identities' status (the outbox), gives up tokens too old, releases an
// identity's security-events finalizer once none of its tokens waits, and keeps each
// SecurityEventStream's status (what is delivered, what waits, Ready).
package streams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
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
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/kube"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/ssf"
	"github.com/nhi-dev/scim-operator/internal/status"
)

const (
	// OutboxFinalizer holds a SecurityEventStream until its tokens are taken off the
	// identities' outbox (they would otherwise hold deleted identities for ever).
	OutboxFinalizer = "scim.nhi.dev/stream-outbox"
	// DefaultMaxPending is how many tokens a stream holds before it is backlogged.
	DefaultMaxPending = 10000
	baseDelay         = time.Second
	maxDelay          = 5 * time.Minute
)

// Config is what both reconcilers share.
type Config struct {
	client.Client
	// APIReader reads push streams' authorization Secrets (never cached).
	APIReader client.Reader
	Server    *ssf.Server
	Recorder  recorder.EventRecorder
	Clock     clock.PassiveClock
	// MaxAge: a token not delivered this long after its revocation is given up.
	MaxAge time.Duration
	// MaxPending backlogs a stream holding this many tokens (DefaultMaxPending when zero).
	MaxPending int
	// OperatorNamespace holds the cluster-wide streams, which the cluster admin declares.
	OperatorNamespace string
	// Guard decides what a namespace's push stream may dial (the namespaced ScimTargets'
	// guard): its endpoint is a URL whoever may update the stream chose.
	Guard *connect.AddressGuard
	// ClusterGuard decides what a push stream of the operator's namespace may dial: Guard's
	// ranges plus --ssf-cluster-push-allowed-cidrs (a SIEM inside the cluster), which no
	// tenant's stream gets.
	ClusterGuard *connect.AddressGuard

	clientOnce sync.Once
	guarded    *http.Client // every push goes through a guard, on one pool of connections each
	cluster    *http.Client
	// failing holds, by stream UID, why its last push failed (cleared by a success): the
	// stream's Ready condition says it; changed wakes the stream's pass when it changes.
	failing map[types.UID]string
	changed chan event.GenericEvent

	mu        sync.Mutex
	notBefore map[types.UID]time.Time // a push receiver's Retry-After
	// accepted remembers the jtis this process pushed and saw accepted (bounded), until their
	// status write is sure to have landed: a pass whose write lost a conflict, or that read a
	// cache not yet showing it, records them without pushing them twice.
	accepted *lru.Cache
}

// IdentityReconciler pushes an identity's tokens to push streams, gives up old ones and
// releases the identity's SecurityEventsFinalizer once none waits.
type IdentityReconciler struct {
	*Config
}

// +kubebuilder:rbac:groups=scim.nhi.dev,resources=securityeventstreams,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=securityeventstreams/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=scim.nhi.dev,resources=securityeventstreams/finalizers,verbs=update
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Reconcile implements reconcile.Reconciler.
func (r *IdentityReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	si := &scimv1.ServiceIdentity{}
	if err := r.Get(ctx, req.NamespacedName, si); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := si.DeepCopy()
	r.giveUp(si)
	res, pushErr := r.push(ctx, si)
	if !equality.Semantic.DeepEqual(base.Status, si.Status) {
		if err := status.Patch(ctx, r, si, base, true); err != nil {
			return ctrl.Result{}, errors.Join(pushErr, fmt.Errorf("recording the delivery of stream tokens: %w", err))
		}
	}
	if pushErr != nil {
		return res, pushErr
	}
	if !si.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(si, scimv1.DeprovisionFinalizer) &&
		controllerutil.ContainsFinalizer(si, scimv1.SecurityEventsFinalizer) && !si.HoldsSecurityEvents() {
		patch := status.FinalizersPatch(si.GetFinalizers())
		controllerutil.RemoveFinalizer(si, scimv1.SecurityEventsFinalizer)
		if err := r.Patch(ctx, si, patch); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("removing finalizer %s: %w", scimv1.SecurityEventsFinalizer, err)
		}
	}
	// A token nobody takes (a poll stream not polled, a paused one) is given up on time, not
	// at the next unrelated change: the identity may be waiting for it to be deleted.
	return sooner(res, r.giveUpIn(si)), nil
}

// giveUpIn is how long until the first of si's Pending stream tokens is older than MaxAge
// (0: none is Pending).
func (r *IdentityReconciler) giveUpIn(si *scimv1.ServiceIdentity) time.Duration {
	now := status.Clock(r.Clock).Now()
	var in time.Duration
	for i := range si.Status.Targets {
		if ev := si.Status.Targets[i].Revocation; ev.StreamUndelivered() {
			d := max(ev.ConfirmedAt.Add(r.maxAge()).Sub(now), 0) + time.Second
			if in == 0 || d < in {
				in = d
			}
		}
	}
	return in
}

func (c *Config) maxAge() time.Duration {
	if c.MaxAge > 0 {
		return c.MaxAge
	}
	return secevent.DefaultMaxAge
}

// giveUp marks GivenUp every stream token older than MaxAge.
func (r *IdentityReconciler) giveUp(si *scimv1.ServiceIdentity) {
	now := status.Clock(r.Clock).Now()
	for i := range si.Status.Targets {
		ev := si.Status.Targets[i].Revocation
		if ev == nil || now.Sub(ev.ConfirmedAt.Time) <= r.maxAge() {
			continue
		}
		for j := range ev.Streams {
			if m := &ev.Streams[j]; m.Delivery == scimv1.SecurityEventPending {
				m.Delivery, m.At = scimv1.SecurityEventGivenUp, &metav1.Time{Time: now}
				r.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonSecurityEventGivenUp, "SecurityEvent",
					"The %s token of the revocation on %s was not delivered to stream %s within %s; it is no longer offered",
					shortEvent(m.Event), si.Status.Targets[i].Name, m.Stream, r.maxAge())
			}
		}
	}
}

func shortEvent(uri string) string { return uri[strings.LastIndexAny(uri, "/:")+1:] }

// push sends si's Pending tokens of enabled push streams, one attempt each.
func (r *IdentityReconciler) push(ctx context.Context, si *scimv1.ServiceIdentity) (ctrl.Result, error) {
	keys := map[string]bool{}
	for i := range si.Status.Targets {
		if ev := si.Status.Targets[i].Revocation; ev != nil {
			for _, m := range ev.Streams {
				if m.Delivery == scimv1.SecurityEventPending {
					keys[m.Stream] = true
				}
			}
		}
	}
	now := status.Clock(r.Clock).Now()
	// One stream waiting out a Retry-After, or failing, does not hold back the others: each
	// is tried, and the pass comes back for the earliest.
	var res ctrl.Result
	var errs []error
	for key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		st := &scimv1.SecurityEventStream{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, st); err != nil {
			if !apierrors.IsNotFound(err) { // gone: its finalizer took its tokens off the outbox, or is about to
				errs = append(errs, err)
			}
			continue
		}
		if st.Spec.Delivery.Method != scimv1.StreamPush || ssf.StateOf(st) != scimv1.StreamEnabled || !st.DeletionTimestamp.IsZero() {
			continue
		}
		if wait := r.waitLeft(st.UID, now); wait > 0 {
			res = sooner(res, wait)
			continue
		}
		tokens, err := r.Server.Tokens(si, st)
		if err != nil || len(tokens) == 0 {
			errs = append(errs, err)
			continue
		}
		tx, err := r.transmitter(ctx, st)
		if err != nil {
			r.fail(st, err.Error())
			r.Recorder.Eventf(st, nil, "Warning", ReasonStreamDeliveryFailed, "Push", "%s", status.Truncate(err.Error(), 512))
			errs = append(errs, fmt.Errorf("stream %s: %w", key, err))
			continue
		}
		for _, tok := range tokens {
			wait, stop, err := r.deliver(ctx, st, tx, tok, now)
			res = sooner(res, wait)
			if stop {
				errs = append(errs, err)
				break
			}
		}
	}
	return res, errors.Join(errs...)
}

// sooner is res with RequeueAfter lowered to wait (when wait > 0).
func sooner(res ctrl.Result, wait time.Duration) ctrl.Result {
	if wait > 0 && (res.RequeueAfter == 0 || wait < res.RequeueAfter) {
		res.RequeueAfter = wait
	}
	return res
}

// ReasonStreamDeliveryFailed is the Warning Event on a stream whose push failed; the
// receiver's answer, or why it could not be reached, is in its message. It is recorded on the
// stream, not on the identities, whose owners may not be the stream's.
const ReasonStreamDeliveryFailed = "StreamDeliveryFailed"

// deliver sends one token and records the answer on its mark; stop ends the stream's pass (a
// Retry-After to wait out, or an error for the backoff).
func (r *IdentityReconciler) deliver(ctx context.Context, st *scimv1.SecurityEventStream,
	tx *secevent.Transmitter, tok ssf.Token, now time.Time) (time.Duration, bool, error) {
	if at, ok := r.accepted.Get(tok.JTI); ok {
		tok.Mark.Delivery, tok.Mark.At = scimv1.SecurityEventDelivered, &metav1.Time{Time: at.(time.Time)}
		return 0, false, nil
	}
	err := tx.Send(ctx, tok.SET)
	if errors.Is(err, connect.ErrAddressNotAllowed) {
		// An endpoint at an address the guard refuses (or a name that does not resolve, which
		// reads the same): retried with backoff until --security-events-max-age, should the
		// name resolve elsewhere or the allowed ranges change.
		r.fail(st, "the endpoint does not resolve, or resolves to an address streams may not reach")
		r.Recorder.Eventf(st, nil, "Warning", ReasonStreamDeliveryFailed, "Push",
			"not pushed: the endpoint does not resolve, or resolves to an address streams may not reach (--namespaced-target-allowed-cidrs)")
		return 0, true, fmt.Errorf("stream %s: %w", ssf.StreamKey(st), err)
	}
	switch verdict, wait := secevent.Judge(ctx, err, secevent.MaxRetryAfter); verdict {
	case secevent.Accepted:
		r.accepted.Add(tok.JTI, now)
		r.fail(st, "")
		tok.Mark.Delivery, tok.Mark.At = scimv1.SecurityEventDelivered, &metav1.Time{Time: now}
	case secevent.Canceled:
		return 0, true, ctx.Err()
	case secevent.WaitAndRetry:
		r.waitUntil(st.UID, now.Add(wait))
		return wait, true, nil
	case secevent.Retry:
		r.fail(st, err.Error())
		r.Recorder.Eventf(st, nil, "Warning", ReasonStreamDeliveryFailed, "Push", "%s", status.Truncate(err.Error(), 512))
		return 0, true, fmt.Errorf("stream %s, token %s: %w", ssf.StreamKey(st), tok.JTI, err)
	default:
		tok.Mark.Delivery, tok.Mark.At = scimv1.SecurityEventRefused, &metav1.Time{Time: now}
		r.Recorder.Eventf(st, nil, "Warning", scimv1.ReasonSecurityEventRefused, "Push",
			"the receiver refused token %s: %s", tok.JTI, status.Truncate(err.Error(), 512))
	}
	return 0, false, nil
}

// AnnotationPushEndpoint binds an authorization Secret to the one push endpoint its value may
// be sent to: the operator reads Secrets anywhere, so a stream's author could otherwise name a
// Secret it may not read and have its value sent to an endpoint of its choosing.
const AnnotationPushEndpoint = "scim.nhi.dev/ssf-push-endpoint"

// transmitter is the push client of st, with its authorization header read afresh. Every push
// stream dials through the guard of namespaced targets, whoever declared it: its endpoint can
// be set by whoever may update the stream, through kubectl or the SSF API.
func (c *Config) transmitter(ctx context.Context, st *scimv1.SecurityEventStream) (*secevent.Transmitter, error) {
	c.clientOnce.Do(func() {
		c.guarded = c.Guard.HTTPClient(2 * secevent.DefaultTimeout)
		c.cluster = c.guarded
		if c.ClusterGuard != nil {
			c.cluster = c.ClusterGuard.HTTPClient(2 * secevent.DefaultTimeout)
		}
	})
	opts := secevent.TransmitterOptions{HTTPClient: c.guarded}
	if st.Namespace == c.OperatorNamespace {
		opts.HTTPClient = c.cluster
	}
	if ref := st.Spec.Delivery.AuthorizationSecretRef; ref != nil {
		var sec corev1.Secret
		err := c.APIReader.Get(ctx, types.NamespacedName{Namespace: st.Namespace, Name: ref.Name}, &sec)
		// One message whether the Secret is missing or not bound: it tells nothing of Secrets
		// the stream's author may not read.
		if err != nil || sec.Annotations[AnnotationPushEndpoint] != st.Spec.Delivery.EndpointURL {
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("reading the authorization Secret %s: %w", ref.Name, err)
			}
			return nil, fmt.Errorf("the authorization Secret %s does not exist or is not bound to this endpoint "+
				"(annotation %s: %s)", ref.Name, AnnotationPushEndpoint, st.Spec.Delivery.EndpointURL)
		}
		v := strings.TrimSpace(string(sec.Data[ref.Key]))
		if v == "" || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("the authorization Secret %s has no single-line value in %q", ref.Name, ref.Key)
		}
		opts.AuthorizationHeader = v
	}
	return secevent.NewTransmitter(st.Spec.Delivery.EndpointURL, opts)
}

// fail records why st's push failed ("" clears it), and has the stream's Ready say so when
// that changes.
func (c *Config) fail(st *scimv1.SecurityEventStream, why string) {
	why = status.Truncate(why, 1024)
	c.mu.Lock()
	if c.failing == nil {
		c.failing = map[types.UID]string{}
	}
	changed := c.failing[st.UID] != why
	if why == "" {
		delete(c.failing, st.UID)
	} else {
		c.failing[st.UID] = why
	}
	c.mu.Unlock()
	if changed {
		select {
		case c.changed <- event.GenericEvent{Object: st}:
		default: // full: the stream's next pass reads the map all the same
		}
	}
}

// failure is why st's last push failed ("" if it did not).
func (c *Config) failure(uid types.UID) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failing[uid]
}

func (c *Config) waitUntil(uid types.UID, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notBefore == nil {
		c.notBefore = map[types.UID]time.Time{}
	}
	if t.After(c.notBefore[uid]) {
		c.notBefore[uid] = t
	}
}

func (c *Config) waitLeft(uid types.UID, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notBefore[uid].Sub(now)
}

// holdsStreamTokens: si has a Pending stream token, or waits for its finalizer's release.
func holdsStreamTokens(o client.Object) bool {
	si, ok := o.(*scimv1.ServiceIdentity)
	if !ok {
		return false
	}
	for i := range si.Status.Targets {
		if si.Status.Targets[i].Revocation.StreamUndelivered() {
			return true
		}
	}
	return !si.DeletionTimestamp.IsZero() && controllerutil.ContainsFinalizer(si, scimv1.SecurityEventsFinalizer)
}

// SetupWithManager registers the identity reconciler; it sees identities holding stream
// tokens, and those being deleted that carry the security-events finalizer.
func (r *IdentityReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	r.accepted = lru.New(4096)
	return ctrl.NewControllerManagedBy(mgr).
		For(&scimv1.ServiceIdentity{}, builder.WithPredicates(predicate.NewPredicateFuncs(holdsStreamTokens))).
		// A push stream enabled again, or its Retry-After over: its identities are looked at.
		Watches(&scimv1.SecurityEventStream{}, handler.EnqueueRequestsFromMapFunc(r.identitiesOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: max(workers, 1),
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](baseDelay, maxDelay),
			NewQueue:                kube.NewNamespaceFairQueue,
		}).
		Named("streamdelivery").
		Complete(r)
}

// identitiesOf are the identities holding a Pending token of the stream o.
func (c *Config) identitiesOf(ctx context.Context, o client.Object) []reconcile.Request {
	st, ok := o.(*scimv1.SecurityEventStream)
	if !ok {
		return nil
	}
	var list scimv1.ServiceIdentityList
	if err := c.List(ctx, &list, client.MatchingFields{ssf.IndexPendingStream: ssf.StreamKey(st)}); err != nil {
		logf.FromContext(ctx).Error(err, "Listing the identities of a stream", "stream", ssf.StreamKey(st))
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// dropTokens takes st's tokens off every identity's outbox (the stream is going).
func (c *Config) dropTokens(ctx context.Context, st *scimv1.SecurityEventStream) error {
	var list scimv1.ServiceIdentityList
	if err := c.List(ctx, &list, client.MatchingFields{ssf.IndexPendingStream: ssf.StreamKey(st)}); err != nil {
		return err
	}
	key, uid := ssf.StreamKey(st), string(st.UID)
	for i := range list.Items {
		nn := client.ObjectKeyFromObject(&list.Items[i])
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			si := &scimv1.ServiceIdentity{}
			if err := c.APIReader.Get(ctx, nn, si); err != nil {
				return client.IgnoreNotFound(err)
			}
			base := si.DeepCopy()
			for j := range si.Status.Targets {
				ev := si.Status.Targets[j].Revocation
				if ev == nil {
					continue
				}
				kept := ev.Streams[:0]
				for _, m := range ev.Streams {
					if m.Stream != key || m.UID != uid {
						kept = append(kept, m)
					}
				}
				ev.Streams = kept
				if len(ev.Streams) == 0 {
					ev.Streams = nil
				}
			}
			if equality.Semantic.DeepEqual(base.Status, si.Status) {
				return nil
			}
			return status.Patch(ctx, c.Client, si, base, true)
		})
		if err != nil {
			return fmt.Errorf("taking stream %s's tokens off %s: %w", key, nn, err)
		}
	}
	return nil
}
