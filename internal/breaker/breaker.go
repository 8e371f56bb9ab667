// Package breaker is the mass-deletion circuit breaker: it charges the irreversible DELETEs
// (and orphan clean-up writes) per target and namespace, and pauses them past the limit.
package breaker

import (
	"context"
	"errors"
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

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

const defaultBreakerInterval = time.Hour

// Breaker limits remote deletions of accounts proven ours, and the orphan clean-up's writes,
// per target, namespace and window, so a mass deletion pauses and reports instead of emptying the
// application. Deactivations are never charged: they are reversible and are what a
// revocation needs, so no tenant's deletions can hold back another's revocation. Each
// namespace has its own share of the limit. Only a real remote DELETE is charged: a lookup
// that finds nothing, or a namespace the target refuses, costs nothing. Accounts of no
// namespace the target serves (orphans naming namespaces that do not exist), and namespaces
// beyond maxBreakerNamespaces in one window, share one bucket (namespace ""), so the provider's
// data cannot grow the status or the memory without bound.
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
	// pruneAt and pruned pace the sweep of pools nobody needs any more (see pool).
	pruneAt int
	pruned  time.Time
	// trips receives, per target kind, the target of a breaker that just opened.
	trips map[string]chan event.GenericEvent
}

// breakerPool holds slots reserved on the API server and not used yet, for one window.
type breakerPool struct {
	sync.Mutex
	uid         types.UID
	windowStart time.Time
	until       time.Time // the end of the window
	release     string
	free        int
	// users counts the callers holding the pool (guarded by Breaker.mu): a pool is pruned only
	// when nobody holds it.
	users int
}

// maxBreakerNamespaces bounds status.circuitBreaker.namespaces (the CRD's maxItems): once a
// window has charged this many namespaces, further ones are charged to the shared bucket.
const maxBreakerNamespaces = 512

// SharedBucket is the share of the accounts of no namespace the target serves (an orphan whose
// externalId names a namespace that does not exist, or one the target does not serve), and of
// the namespaces beyond maxBreakerNamespaces: the provider's data chooses these names, so they
// share one slice of the limit instead of each getting its own.
const SharedBucket = ""

// BucketName is how a bucket is shown in messages.
func BucketName(namespace string) string {
	if namespace == SharedBucket {
		return "(other)"
	}
	return strconv.Quote(namespace)
}

// pruneEvery is how often, at least, pools of past windows are dropped.
const pruneEvery = time.Minute

// New returns a breaker whose trip notifications are buffered.
func New(c client.Client, reader client.Reader, clusterResourceNamespace string, clk clock.PassiveClock) *Breaker {
	return &Breaker{Client: c, Reader: reader, ClusterResourceNamespace: clusterResourceNamespace, Clock: clk,
		pools: map[string]*breakerPool{}, trips: map[string]chan event.GenericEvent{
			scimv1.KindScimTarget:        make(chan event.GenericEvent, 64),
			scimv1.KindClusterScimTarget: make(chan event.GenericEvent, 64),
		}}
}

// OpenError says the breaker refused a deletion; Wait is when a slot frees.
type OpenError struct {
	Target    string
	Namespace string
	Wait      time.Duration
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("Paused by the circuit breaker of %s (namespace %s's share); see its status", e.Target, BucketName(e.Namespace))
}

// Trips is where the breaker announces, for one target kind, a target whose breaker opened.
func (b *Breaker) Trips(kind string) <-chan event.GenericEvent { return b.trips[kind] }

func (b *Breaker) now() time.Time { return status.Clock(b.Clock).Now() }

func breakerLimits(t *targets.Target) (int, time.Duration, bool) {
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
func currentWindow(t *targets.Target, interval time.Duration, now time.Time) scimv1.BreakerStatus {
	release := t.Object.GetAnnotations()[scimv1.BreakerReleaseAnnotation]
	if s := t.Status.CircuitBreaker; s != nil && s.Release == release && now.Sub(s.WindowStart.Time) < interval && !s.WindowStart.After(now) {
		return *s
	}
	return scimv1.BreakerStatus{WindowStart: metav1.NewTime(now), Release: release}
}

// poolKey keys the reserved slots of one namespace on one target.
func poolKey(t *targets.Target, namespace string) string { return t.Key() + "|" + namespace }

// pool returns the pool of one namespace on t, held until release is called.
func (b *Breaker) pool(t *targets.Target, namespace string) *breakerPool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune()
	p := b.pools[poolKey(t, namespace)]
	if p == nil {
		p = &breakerPool{}
		b.pools[poolKey(t, namespace)] = p
	}
	p.users++
	return p
}

// peek returns the pool of one namespace on t, if there is one, held until release is called.
func (b *Breaker) peek(t *targets.Target, namespace string) *breakerPool {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[poolKey(t, namespace)]
	if p != nil {
		p.users++
	}
	return p
}

func (b *Breaker) release(p *breakerPool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p.users--
}

// prune drops the pools nobody holds whose window is over (or that never reserved a slot),
// once a minute or when the map doubled since the last sweep, so memory follows the live
// windows (at most maxBreakerNamespaces pools per target), not every namespace ever charged.
// Callers hold b.mu.
func (b *Breaker) prune() {
	now := b.now()
	if len(b.pools) < b.pruneAt && now.Sub(b.pruned) < pruneEvery {
		return
	}
	for k, p := range b.pools {
		if p.users == 0 && !now.Before(p.until) {
			delete(b.pools, k)
		}
	}
	b.pruned, b.pruneAt = now, max(64, 2*len(b.pools))
}

// chargedNamespace reports a namespace the window lists.
func chargedNamespace(w *scimv1.BreakerStatus, namespace string) bool {
	for _, n := range w.Namespaces {
		if n.Namespace == namespace {
			return true
		}
	}
	return false
}

// rowsKept is the rows of status.circuitBreaker.namespaces kept free for the shared bucket: one
// until it is listed.
func rowsKept(w *scimv1.BreakerStatus) int {
	if chargedNamespace(w, SharedBucket) {
		return 0
	}
	return 1
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
// a *OpenError when the namespace's share of the window is used up, or the API error
// of a reservation that could not be written.
func (b *Breaker) Charge(ctx context.Context, t *targets.Target, namespace string) error {
	_, err := b.ChargeBucket(ctx, t, namespace)
	return err
}

// ChargeBucket is Charge, and says which bucket it charged: the namespace's own, or the
// shared one ("") when the window already lists maxBreakerNamespaces other namespaces. A
// Refund goes to that bucket.
func (b *Breaker) ChargeBucket(ctx context.Context, t *targets.Target, namespace string) (string, error) {
	err := b.charge(ctx, t, namespace)
	if errors.Is(err, errBreakerFull) {
		return SharedBucket, b.charge(ctx, t, SharedBucket)
	}
	return namespace, err
}

// errBreakerFull says the window lists as many namespaces as the status may hold.
var errBreakerFull = errors.New("the circuit breaker's status lists as many namespaces as it may")

func (b *Breaker) charge(ctx context.Context, t *targets.Target, namespace string) error {
	limit, interval, on := breakerLimits(t)
	if !on {
		return nil
	}
	p := b.pool(t, namespace)
	defer b.release(p)
	p.Lock()
	defer p.Unlock()
	now := b.now()
	// The pool is judged on its own (the cached status may not show our last reservation yet).
	if p.free > 0 && p.uid == t.Object.GetUID() && now.Sub(p.windowStart) < interval &&
		p.release == t.Object.GetAnnotations()[scimv1.BreakerReleaseAnnotation] {
		p.free--
		return nil
	}
	chunk := max(1, min(limit/10, 50))
	obj := t.Object.DeepCopyObject().(client.Object)
	for attempt := 0; ; attempt++ {
		cur := targets.OfObject(obj, b.ClusterResourceNamespace)
		w := currentWindow(cur, interval, now)
		if namespace != SharedBucket && !chargedNamespace(&w, namespace) && len(w.Namespaces)+rowsKept(&w) >= maxBreakerNamespaces {
			return errBreakerFull
		}
		used := namespaceCharged(&w, namespace)
		if used >= limit {
			b.trip(cur)
			return &OpenError{Target: cur.Key(), Namespace: namespace, Wait: max(w.WindowStart.Add(interval).Sub(now), time.Second)}
		}
		base := obj.DeepCopyObject().(client.Object)
		k := min(chunk, limit-used)
		chargeNamespace(&w, namespace, k)
		cur.Status.CircuitBreaker = &w
		err := b.Client.Status().Patch(ctx, obj, status.LockedPatch(base))
		if err == nil {
			p.uid, p.windowStart, p.until, p.release, p.free = obj.GetUID(), w.WindowStart.Time, w.WindowStart.Add(interval), w.Release, k-1
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
func (b *Breaker) Refund(t *targets.Target, namespace string) {
	p := b.peek(t, namespace)
	if p == nil {
		return // pruned: the slot is forgotten, which only pauses earlier
	}
	defer b.release(p)
	p.Lock()
	defer p.Unlock()
	if p.uid == t.Object.GetUID() {
		p.free++
	}
}

func (b *Breaker) trip(t *targets.Target) {
	select {
	case b.trips[t.Kind] <- event.GenericEvent{Object: t.Object.DeepCopyObject().(client.Object)}:
	default:
	}
}

// Open reports an open breaker from the target's status (the namespaces whose share of the
// window is used up): a message for its conditions and when to look again.
func (b *Breaker) Open(t *targets.Target) (bool, string, time.Duration) {
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
		unused := false
		if p := b.peek(t, n.Namespace); p != nil {
			p.Lock()
			unused = p.uid == t.Object.GetUID() && p.windowStart.Equal(w.WindowStart.Time) && p.free > 0
			p.Unlock()
			b.release(p)
		}
		if !unused {
			paused = append(paused, BucketName(n.Namespace))
		}
	}
	if len(paused) == 0 {
		return false, "", 0
	}
	return true, fmt.Sprintf("Circuit breaker open for namespace %s: deletions since %s reached spec.circuitBreaker.maxDeletionsPerInterval=%d per %s "+
			"(each namespace has its own share); further deletions from it are paused, their accounts already inactive (nothing is lost: finalizers "+
			"hold the identities). Other namespaces are not affected. Raise the limit, or set annotation %s to a new value to release it",
			strings.Join(paused, ", "), w.WindowStart.UTC().Format(time.RFC3339), limit, interval, scimv1.BreakerReleaseAnnotation),
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
