package scim

import (
	"context"
	"time"
)

const (
	// DefaultSlotWait is how long a call waits for a free slot before it gives up (NewSlots).
	DefaultSlotWait = 250 * time.Millisecond
	// BusyRetryAfter is the Retry-After of ErrTargetBusy: long enough for a stuck call to time
	// out or finish, short enough that a briefly busy target costs little.
	BusyRetryAfter = time.Second
)

// Slots bounds the requests in flight to one target. Share one Slots among every Client of a
// target (the controller's builder keeps one per target). A call holds a slot while it
// authenticates (an OAuth2 token fetch included) and while its HTTP exchange runs, and waits at
// most maxWait for one; when none frees in time it fails with ErrTargetBusy (retryable, with a
// Retry-After), so a target that hangs holds at most n of the caller's workers while the
// others are released to work for other targets. Against a healthy target (calls of a few
// milliseconds) slots free long before maxWait and the gate costs nothing noticeable.
// A nil *Slots does not bound anything.
type Slots struct {
	ch      chan struct{}
	maxWait time.Duration
}

// NewSlots returns a gate of n slots (at least 1) whose waits last at most maxWait
// (DefaultSlotWait when <= 0).
func NewSlots(n int, maxWait time.Duration) *Slots {
	if maxWait <= 0 {
		maxWait = DefaultSlotWait
	}
	return &Slots{ch: make(chan struct{}, max(n, 1)), maxWait: maxWait}
}

// Size is the number of slots.
func (s *Slots) Size() int { return cap(s.ch) }

// InFlight is the number of slots taken now.
func (s *Slots) InFlight() int { return len(s.ch) }

// acquire takes a slot for the call named by call; release gives it back.
func (s *Slots) acquire(ctx context.Context, call string) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	release = func() { <-s.ch }
	select {
	case s.ch <- struct{}{}:
		return release, nil
	default:
	}
	timer := time.NewTimer(s.maxWait)
	defer timer.Stop()
	select {
	case s.ch <- struct{}{}:
		return release, nil
	case <-timer.C:
		return nil, &busyError{call: call, waited: s.maxWait, retryAfter: BusyRetryAfter}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
