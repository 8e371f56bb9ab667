package scim

import (
	"context"
	"sync/atomic"
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
// authenticates (an OAuth2 token fetch included) and while its HTTP exchange runs. A call waits
// for a slot while the target makes progress (some slot was given back within maxWait); when
// none has been given back for maxWait the target is stuck, and the call fails with
// ErrTargetBusy (retryable, with a Retry-After). So a target that hangs holds at most Size() of
// the caller's workers, plus waiters for maxWait each, while the others are released to work
// for other targets; a burst against a healthy target (calls of a few milliseconds) only
// queues, however long the queue, within the call's own deadline.
//
// Beyond the n slots a few are reserved for urgent calls (revocations, see Urgent): when some
// of a target's requests hang (a slow lookup, say) while others are answered, they cannot hold
// back taking an account away.
//
// A nil *Slots does not bound anything.
type Slots struct {
	ch       chan struct{}
	reserved chan struct{}
	maxWait  time.Duration
	// last is how the last call to give its slot back ended ("" when it was answered).
	last atomic.Pointer[string]
	// released is when a slot was last given back (UnixNano): the target's progress.
	released atomic.Int64
}

// NewSlots returns a gate of n slots (at least 1), plus n/4 (at least 1) reserved for urgent
// calls, whose waits last at most maxWait (DefaultSlotWait when <= 0).
func NewSlots(n int, maxWait time.Duration) *Slots {
	if maxWait <= 0 {
		maxWait = DefaultSlotWait
	}
	n = max(n, 1)
	return &Slots{ch: make(chan struct{}, n), reserved: make(chan struct{}, max(n/4, 1)), maxWait: maxWait}
}

// Size is the number of slots, the reserved ones included: the most requests in flight.
func (s *Slots) Size() int { return cap(s.ch) + cap(s.reserved) }

// InFlight is the number of slots taken now.
func (s *Slots) InFlight() int { return len(s.ch) + len(s.reserved) }

// note records how a call that held a slot ended.
func (s *Slots) note(ended string) {
	if s != nil {
		s.last.Store(&ended)
	}
}

type urgentKey struct{}

// Urgent marks the calls made with the returned context as urgent: they may take a target's
// reserved slots. Use it for revocations only.
func Urgent(ctx context.Context) context.Context { return context.WithValue(ctx, urgentKey{}, true) }

func isUrgent(ctx context.Context) bool { u, _ := ctx.Value(urgentKey{}).(bool); return u }

// acquire takes a slot for the call named by call; release gives it back.
func (s *Slots) acquire(ctx context.Context, call string) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	general := func() { <-s.ch; s.released.Store(time.Now().UnixNano()) }
	reserved := func() { <-s.reserved; s.released.Store(time.Now().UnixNano()) }
	// A nil channel blocks forever: an ordinary call never takes a reserved slot.
	var lane chan struct{}
	if isUrgent(ctx) {
		lane = s.reserved
	}
	select {
	case s.ch <- struct{}{}:
		return general, nil
	default:
	}
	select {
	case lane <- struct{}{}:
		return reserved, nil
	default:
	}
	timer := time.NewTimer(s.maxWait)
	defer timer.Stop()
	for {
		select {
		case s.ch <- struct{}{}:
			return general, nil
		case lane <- struct{}{}:
			return reserved, nil
		case <-timer.C:
			// Stuck only if no slot came back for maxWait; otherwise the queue moves: wait on.
			if since := time.Since(time.Unix(0, s.released.Load())); since < s.maxWait {
				timer.Reset(s.maxWait - since)
				continue
			}
			e := &busyError{call: call, waited: s.maxWait, retryAfter: BusyRetryAfter}
			if last := s.last.Load(); last != nil {
				e.lastEnded = *last
			}
			return nil, e
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
