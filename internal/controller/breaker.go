package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

const defaultBreakerInterval = time.Hour

// Breaker limits remote deletions of accounts proven ours, and the orphan clean-up's writes,
// per target, namespace and window, so a mass deletion pauses and reports instead of emptying the
// application. Deactivations are never charged: they are reversible and are what a
// revocation needs, so no tenant's deletions can hold back another's revocation. Each
// namespace has its own share of the limit. Only a real remote DELETE is charged: a lookup
// that finds nothing, or a namespace the target refuses, costs nothing.
//
// The window lives in the target's status.circuitBreaker, so a restart or a failover does
// not reset it. Slots are reserved there a few at a time (a tenth of the limit) and handed out
// from memory; a restart forgets reserved slots it did not use, which only makes the breaker
// pause earlier, never later.
type Breaker struct {
	// Client writes the target's status; Reader reads it fresh when a write conflicts.
	Client client.Client
	Reader client.Reader
	// ClusterResourceNamespace is passed to views of re-read targets.
	ClusterResourceNamespace string
	// Clock tells the time of windows (nil: the real clock).
	Clock clock.PassiveClock

	mu    sync.Mutex
	pools map[string]*breakerPool
	// trips receives, per target kind, the target of a breaker that just opened.
	trips map[string]chan event.GenericEvent
}

// breakerPool holds slots reserved on the API server and not used yet, for one window.
type breakerPool struct {
	sync.Mutex
	uid         types.UID
	windowStart time.Time
	release     string
	free        int
}

// NewBreaker returns a breaker whose trip notifications are buffered.
func NewBreaker(c client.Client, reader client.Reader, clusterResourceNamespace string) *Breaker {
	return &Breaker{Client: c, Reader: reader, ClusterResourceNamespace: clusterResourceNamespace,
		pools: map[string]*breakerPool{}, trips: map[string]chan event.GenericEvent{
			scimv1.KindScimTarget:        make(chan event.GenericEvent, 64),
			scimv1.KindClusterScimTarget: make(chan event.GenericEvent, 64),
		}}
}

// BreakerOpenError says the breaker refused a deletion; Wait is when a slot frees.
type BreakerOpenError struct {
	Target    string
	Namespace string
	Wait      time.Duration
}

func (e *BreakerOpenError) Error() string {
	return fmt.Sprintf("Paused by the circuit breaker of %s (namespace %q's share); see its status", e.Target, e.Namespace)
}

// Trips is where the breaker announces, for one target kind, a target whose breaker opened.
func (b *Breaker) Trips(kind string) <-chan event.GenericEvent { return b.trips[kind] }

func (b *Breaker) now() time.Time { return clockOr(b.Clock).Now() }

func breakerLimits(t *Target) (int, time.Duration, bool) {
	cb := t.Spec.CircuitBreaker
	if cb == nil || cb.MaxDeletionsPerInterval <= 0 {
		return 0, 0, false
	}
	interval := defaultBreakerInterval
	if cb.Interval != nil {
		if d, err := cb.Interval.Parse(); err == nil {
			interval = d
		}
	}
	return int(cb.MaxDeletionsPerInterval), interval, true
}

// current is the window a status describes, or a new one when there is none, it expired, or
// the release annotation changed.
func currentWindow(t *Target, interval time.Duration, now time.Time) scimv1.BreakerStatus {
	release := t.Object.GetAnnotations()[breakerReleaseAnnotation]
	if s := t.Status.CircuitBreaker; s != nil && s.Release == release && now.Sub(s.WindowStart.Time) < interval && !s.WindowStart.After(now) {
		return *s
	}
	return scimv1.BreakerStatus{WindowStart: metav1.NewTime(now), Release: release}
}

// poolKey keys the reserved slots of one namespace on one target.
func poolKey(t *Target, namespace string) string { return t.Key() + "|" + namespace }

func (b *Breaker) pool(t *Target, namespace string) *breakerPool {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[poolKey(t, namespace)]
	if p == nil {
		p = &breakerPool{}
		b.pools[poolKey(t, namespace)] = p
	}
	return p
}

// namespaceCharged is what a window charged one namespace.
func namespaceCharged(w *scimv1.BreakerStatus, namespace string) int {
	for _, n := range w.Namespaces {
		if n.Namespace == namespace {
			return int(n.Charged)
		}
	}
	return 0
}

// chargeNamespace adds k to the namespace's share of the window and to its total.
func chargeNamespace(w *scimv1.BreakerStatus, namespace string, k int) {
	w.Charged += int32(k)
	for i := range w.Namespaces {
		if w.Namespaces[i].Namespace == namespace {
			w.Namespaces[i].Charged += int32(k)
			return
		}
	}
	w.Namespaces = append(w.Namespaces, scimv1.BreakerNamespace{Namespace: namespace, Charged: int32(k)})
}

// Charge reserves one remote deletion on t for an account of namespace. Each namespace has
// its own share of the limit, so one namespace's deletions never pause another's. It returns
// a *BreakerOpenError when the namespace's share of the window is used up, or the API error
// of a reservation that could not be written.
func (b *Breaker) Charge(ctx context.Context, t *Target, namespace string) error {
	limit, interval, on := breakerLimits(t)
	if !on {
		return nil
	}
	p := b.pool(t, namespace)
	p.Lock()
	defer p.Unlock()
	now := b.now()
	// The pool is judged on its own (the cached status may not show our last reservation yet).
	if p.free > 0 && p.uid == t.Object.GetUID() && now.Sub(p.windowStart) < interval &&
		p.release == t.Object.GetAnnotations()[breakerReleaseAnnotation] {
		p.free--
		return nil
	}
	chunk := max(1, min(limit/10, 50))
	obj := t.Object.DeepCopyObject().(client.Object)
	for attempt := 0; ; attempt++ {
		cur := viewOf(obj, b.ClusterResourceNamespace)
		w := currentWindow(cur, interval, now)
		used := namespaceCharged(&w, namespace)
		if used >= limit {
			b.trip(cur)
			return &BreakerOpenError{Target: cur.Key(), Namespace: namespace, Wait: max(w.WindowStart.Add(interval).Sub(now), time.Second)}
		}
		base := obj.DeepCopyObject().(client.Object)
		k := min(chunk, limit-used)
		chargeNamespace(&w, namespace, k)
		cur.Status.CircuitBreaker = &w
		err := b.Client.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		if err == nil {
			p.uid, p.windowStart, p.release, p.free = obj.GetUID(), w.WindowStart.Time, w.Release, k-1
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 8 {
			return fmt.Errorf("recording a deletion in the circuit breaker of %s: %w", t.Key(), err)
		}
		if err := b.Reader.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return fmt.Errorf("reading %s for its circuit breaker: %w", t.Key(), err)
		}
	}
}

// Refund gives back a slot whose deletion changed nothing. It stays reserved on the API
// server and is handed out again by this process.
func (b *Breaker) Refund(t *Target, namespace string) {
	p := b.pool(t, namespace)
	p.Lock()
	defer p.Unlock()
	if p.uid == t.Object.GetUID() {
		p.free++
	}
}

func (b *Breaker) trip(t *Target) {
	select {
	case b.trips[t.Kind] <- event.GenericEvent{Object: t.Object.DeepCopyObject().(client.Object)}:
	default:
	}
}

// Open reports an open breaker from the target's status (the namespaces whose share of the
// window is used up): a message for its conditions and when to look again.
func (b *Breaker) Open(t *Target) (bool, string, time.Duration) {
	limit, interval, on := breakerLimits(t)
	if !on {
		return false, "", 0
	}
	now := b.now()
	w := currentWindow(t, interval, now)
	var paused []string
	for _, n := range w.Namespaces {
		if int(n.Charged) < limit {
			continue
		}
		p := b.pool(t, n.Namespace)
		p.Lock()
		unused := p.uid == t.Object.GetUID() && p.windowStart.Equal(w.WindowStart.Time) && p.free > 0
		p.Unlock()
		if !unused {
			paused = append(paused, strconv.Quote(n.Namespace))
		}
	}
	if len(paused) == 0 {
		return false, "", 0
	}
	return true, fmt.Sprintf("Circuit breaker open for namespace %s: deletions since %s reached spec.circuitBreaker.maxDeletionsPerInterval=%d per %s "+
			"(each namespace has its own share); further deletions from it are paused, their accounts already inactive (nothing is lost: finalizers "+
			"hold the identities). Other namespaces are not affected. Raise the limit, or set annotation %s to a new value to release it",
			strings.Join(paused, ", "), w.WindowStart.UTC().Format(time.RFC3339), limit, interval, breakerReleaseAnnotation),
		max(w.WindowStart.Add(interval).Sub(now), time.Second)
}

// Forget drops what is kept in memory for a deleted target.
func (b *Breaker) Forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.pools {
		if strings.HasPrefix(k, key+"|") {
			delete(b.pools, k)
		}
	}
}

// annotationPredicate passes updates that change the value of one annotation.
func annotationPredicate(key string) predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetAnnotations()[key] != e.ObjectNew.GetAnnotations()[key]
	}}
}
