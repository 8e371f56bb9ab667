package controller

import (
	"fmt"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// breakerReleaseAnnotation on a target, set to a new value, closes an open circuit breaker.
const breakerReleaseAnnotation = "scim.nhi.dev/release-breaker"

// ReasonBreakerOpen: deprovisioning paused by spec.circuitBreaker.
const ReasonBreakerOpen = "CircuitBreakerOpen"

const defaultBreakerInterval = time.Hour

// Breaker limits deprovisionings (account deletions and deactivations, orphan clean-up
// included) per target and interval, so a mass deletion pauses and reports instead of
// emptying the application. Windows live in memory: a restart starts a new window, and
// nothing waiting is lost because finalizers hold the identities.
type Breaker struct {
	mu      sync.Mutex
	windows map[string]*breakerWindow
	// trips receives, per target kind, the target of a breaker that just opened.
	trips map[string]chan event.GenericEvent
}

type breakerWindow struct {
	times   []time.Time
	release string
	open    bool
}

// NewBreaker returns a breaker whose trip notifications are buffered.
func NewBreaker() *Breaker {
	return &Breaker{windows: map[string]*breakerWindow{}, trips: map[string]chan event.GenericEvent{
		scimv1.KindScimTarget:        make(chan event.GenericEvent, 64),
		scimv1.KindClusterScimTarget: make(chan event.GenericEvent, 64),
	}}
}

// Trips is where the breaker announces, for one target kind, a target whose breaker opened.
func (b *Breaker) Trips(kind string) <-chan event.GenericEvent { return b.trips[kind] }

func breakerLimits(t *Target) (int, time.Duration, bool) {
	cb := t.Spec.CircuitBreaker
	if cb == nil || cb.MaxDeletionsPerInterval <= 0 {
		return 0, 0, false
	}
	interval := defaultBreakerInterval
	if cb.Interval != nil && cb.Interval.Duration > 0 {
		interval = cb.Interval.Duration
	}
	return int(cb.MaxDeletionsPerInterval), interval, true
}

// window returns the target's window with old entries dropped; the caller holds mu.
func (b *Breaker) window(t *Target, interval time.Duration, now time.Time) *breakerWindow {
	w := b.windows[t.Key()]
	if w == nil {
		w = &breakerWindow{}
		b.windows[t.Key()] = w
	}
	if rel := t.Object.GetAnnotations()[breakerReleaseAnnotation]; rel != w.release {
		w.release, w.times, w.open = rel, nil, false
	}
	cut := 0
	for cut < len(w.times) && now.Sub(w.times[cut]) >= interval {
		cut++
	}
	w.times = w.times[cut:]
	return w
}

// Allow reserves one deprovisioning on t. When the limit is reached it returns false and how
// long until a slot frees.
func (b *Breaker) Allow(t *Target) (bool, time.Duration) {
	limit, interval, on := breakerLimits(t)
	if !on {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	w := b.window(t, interval, now)
	if len(w.times) >= limit {
		if !w.open {
			w.open = true
			select {
			case b.trips[t.Kind] <- event.GenericEvent{Object: t.Object.DeepCopyObject().(client.Object)}:
			default:
			}
		}
		return false, w.times[0].Add(interval).Sub(now)
	}
	w.times = append(w.times, now)
	return true, 0
}

// Refund gives back a reservation whose deprovisioning failed.
func (b *Breaker) Refund(t *Target) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.windows[t.Key()]; w != nil && len(w.times) > 0 {
		w.times = w.times[:len(w.times)-1]
	}
}

// Open reports an open breaker: a message for the target's status and when to look again.
func (b *Breaker) Open(t *Target) (bool, string, time.Duration) {
	limit, interval, on := breakerLimits(t)
	if !on {
		return false, "", 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	w := b.window(t, interval, now)
	if !w.open || len(w.times) < limit {
		w.open = false
		return false, "", 0
	}
	return true, fmt.Sprintf("Circuit breaker open: %d deprovisionings in the last %s reached spec.circuitBreaker.maxDeletionsPerInterval=%d; "+
			"further deprovisioning on this target is paused (nothing is lost: finalizers hold the identities). "+
			"Raise the limit, or set annotation %s to a new value to release it", len(w.times), interval, limit, breakerReleaseAnnotation),
		w.times[0].Add(interval).Sub(now)
}

// annotationPredicate passes updates that change the value of one annotation.
func annotationPredicate(key string) predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetAnnotations()[key] != e.ObjectNew.GetAnnotations()[key]
	}}
}
