package scim

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Priority orders the requests that wait for a target's rate limit.
type Priority int

const (
	// PriorityRevocation: taking an account away (Urgent contexts).
	PriorityRevocation Priority = iota
	// PriorityProvisioning: creating, updating and reading accounts for their identities (the default).
	PriorityProvisioning
	// PrioritySweep: the periodic list of a target's accounts, and what it cleans up.
	PrioritySweep
	priorities
)

type priorityKey struct{}

// WithPriority sets the priority of the calls made with the returned context. Urgent sets
// PriorityRevocation.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

func priorityOf(ctx context.Context) Priority {
	if isUrgent(ctx) {
		return PriorityRevocation
	}
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok && p >= 0 && p < priorities {
		return p
	}
	return PriorityProvisioning
}

// Limiter is a target's rate limit with priorities: when requests wait for it, each token
// goes to the oldest waiter of the highest priority (revocations, then provisioning, then
// sweeps), so retiring accounts during a provisioning wave waits only for the rate, not for
// the wave. golang.org/x/time/rate paces the tokens; it serves waiters in no set order, hence
// the queues here. Share one Limiter among every Client of a target.
type Limiter struct {
	lim *rate.Limiter

	mu          sync.Mutex
	queues      [priorities][]*waiter
	dispatching bool
}

type waiter struct {
	ready chan struct{}
	gone  bool // its caller gave up
}

// NewLimiter allows r requests per second with bursts of burst (at least 1).
func NewLimiter(r rate.Limit, burst int) *Limiter {
	return &Limiter{lim: rate.NewLimiter(r, max(burst, 1))}
}

// Wait blocks until the call may be sent, in priority order, or ctx is done.
func (l *Limiter) Wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if !l.dispatching && l.lim.Allow() {
		l.mu.Unlock()
		return nil // nobody waits and a token is there
	}
	w := &waiter{ready: make(chan struct{})}
	p := priorityOf(ctx)
	l.queues[p] = append(l.queues[p], w)
	if !l.dispatching {
		l.dispatching = true
		go l.dispatch()
	}
	l.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-w.ready:
			return nil // granted meanwhile: use it
		default:
		}
		w.gone = true
		return ctx.Err()
	}
}

// dispatch hands out tokens while anyone waits: it waits for the next token, then gives it to
// the first waiter of the highest priority present at that moment.
func (l *Limiter) dispatch() {
	for {
		if !l.waiting() {
			return
		}
		res := l.lim.Reserve()
		if d := res.Delay(); d > 0 {
			timer := time.NewTimer(d)
			<-timer.C
		}
		l.mu.Lock()
		if w := l.pop(); w != nil {
			close(w.ready)
		} else {
			res.Cancel() // everyone gave up: the token is not spent
		}
		l.mu.Unlock()
	}
}

// waiting reports whether anyone waits; when nobody does, the dispatcher stops (under the lock,
// so a new waiter starts another).
func (l *Limiter) waiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.queues {
		for len(l.queues[p]) > 0 && l.queues[p][0].gone {
			l.queues[p] = l.queues[p][1:]
		}
		if len(l.queues[p]) > 0 {
			return true
		}
	}
	l.dispatching = false
	return false
}

// pop removes and returns the first live waiter of the highest priority; l.mu is held.
func (l *Limiter) pop() *waiter {
	for p := range l.queues {
		for len(l.queues[p]) > 0 {
			w := l.queues[p][0]
			l.queues[p][0] = nil
			l.queues[p] = l.queues[p][1:]
			if !w.gone {
				return w
			}
		}
	}
	return nil
}
