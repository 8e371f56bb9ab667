package secevent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

const (
	// DefaultQueueSize bounds the SETs waiting for a worker.
	DefaultQueueSize = 1000
	// DefaultWorkers is how many SETs are delivered at once.
	DefaultWorkers = 2
)

// ErrQueueFull is what Publish returns when the queue is full: the event is not sent (and is
// counted as dropped).
var ErrQueueFull = errors.New("security event queue is full; event dropped")

// ErrAlreadyStarted is what a second Start returns.
var ErrAlreadyStarted = errors.New("security event publisher already started")

// PublisherOptions configure a Publisher; the zero value is usable.
type PublisherOptions struct {
	// QueueSize bounds the SETs waiting for a worker (those being delivered are not
	// counted); DefaultQueueSize when zero.
	QueueSize int
	// Workers deliver SETs concurrently, each one SET at a time with its retries;
	// DefaultWorkers when zero.
	Workers int
	// Clock gives iat; the real clock when nil.
	Clock clock.Clock
	// OnDone, when set, is called once per published event with its outcome (Err nil when
	// delivered), from a worker goroutine. Not called for events abandoned at shutdown.
	OnDone func(Result)
}

// Result is the outcome of one published event.
type Result struct {
	JTI   string
	Event Event
	// Err is nil when the receiver accepted the SET; a *DeliveryError when it refused it
	// (not retried), wrapped in ErrPossiblyDelivered when that may be a replay of an attempt
	// that got no answer; wraps ErrRetriesExhausted when retries ran out.
	Err error
}

type item struct {
	jti string
	set string
	ev  Event
}

// Publisher signs events into SETs and delivers them in the background through a bounded
// queue. Publish never blocks on the network. It is a controller-runtime Runnable: add it to
// the manager (mgr.Add) and the manager starts it, on the leader only, and stops it.
//
// The queue lives in memory: SETs still queued or being retried when the manager stops are
// lost (counted as abandoned). The account's state on the target remains the evidence; a SET
// is its signed notification.
type Publisher struct {
	issuer   string
	audience string
	signer   *Signer
	tx       *Transmitter
	clock    clock.Clock
	onDone   func(Result)
	workers  int
	queue    chan item
	started  atomic.Bool

	published, delivered, possiblyDelivered, refused, exhausted, dropped, abandoned, givenUp atomic.Int64
}

// NewPublisher returns a publisher of SETs issued by issuer for audience, signed by signer and
// pushed by tx.
func NewPublisher(issuer, audience string, signer *Signer, tx *Transmitter, opts PublisherOptions) (*Publisher, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("issuer and audience are required")
	}
	if signer == nil || tx == nil {
		return nil, errors.New("a signer and a transmitter are required")
	}
	p := &Publisher{issuer: issuer, audience: audience, signer: signer, tx: tx,
		clock: opts.Clock, onDone: opts.OnDone, workers: opts.Workers}
	if p.clock == nil {
		p.clock = clock.RealClock{}
	}
	if p.workers <= 0 {
		p.workers = DefaultWorkers
	}
	size := opts.QueueSize
	if size <= 0 {
		size = DefaultQueueSize
	}
	p.queue = make(chan item, size)
	return p, nil
}

// Publish signs ev into a SET now (its iat and jti are fixed here, so every retry sends the
// same token) and queues it. It returns the SET's jti, ErrQueueFull when the queue is full, or
// why ev cannot be a SET.
func (p *Publisher) Publish(ctx context.Context, ev Event) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	c, err := NewClaims(p.issuer, p.audience, ev, p.clock.Now())
	if err != nil {
		return "", fmt.Errorf("security event: %w", err)
	}
	set, err := p.signer.Sign(c)
	if err != nil {
		return "", err
	}
	select {
	case p.queue <- item{jti: c.ID, set: set, ev: ev}:
		p.published.Add(1)
		return c.ID, nil
	default:
		p.dropped.Add(1)
		return "", ErrQueueFull
	}
}

// ErrNoJTI is what Send returns for an empty jti.
var ErrNoJTI = errors.New("a SET needs a jti")

// Send signs ev into a SET with the given jti, issued now, and makes one delivery attempt: nil
// when the receiver accepted it, else a *DeliveryError (IsRetryable tells whether to try
// again, RetryAfter how long the receiver asked to wait) or why ev cannot be a SET. It never
// waits between attempts: a caller keeping the SET in a durable outbox schedules the next
// attempt on a delay queue, and sends the same jti each time so the receiver de-duplicates.
func (p *Publisher) Send(ctx context.Context, jti string, ev Event) error {
	if jti == "" {
		return ErrNoJTI
	}
	c, err := NewClaims(p.issuer, p.audience, ev, p.clock.Now())
	if err != nil {
		return fmt.Errorf("security event: %w", err)
	}
	c.ID = jti
	set, err := p.signer.Sign(c)
	if err != nil {
		return err
	}
	err = p.tx.Send(ctx, set)
	switch {
	case err == nil:
		p.delivered.Add(1)
	case ctx.Err() != nil, IsRetryable(err):
	default:
		p.refused.Add(1)
	}
	return err
}

// GaveUp counts a SET its outbox stopped sending (it was not accepted in time).
func (p *Publisher) GaveUp() { p.givenUp.Add(1) }

// Start delivers queued SETs until ctx ends; it returns once its workers have stopped.
func (p *Publisher) Start(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	logger := log.FromContext(ctx).WithName("security-events").WithValues("receiver", p.tx.Receiver())
	ctx = log.IntoContext(ctx, logger)
	logger.Info("Delivering security events", "workers", p.workers, "queueSize", cap(p.queue))
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() { p.work(ctx) })
	}
	wg.Wait()
	if n := len(p.queue); n > 0 {
		p.abandoned.Add(int64(n))
		logger.Info("Security events not delivered at shutdown", "count", n)
	}
	return nil
}

func (p *Publisher) work(ctx context.Context) {
	logger := log.FromContext(ctx)
	for {
		// A stopped publisher stops taking work even when the queue is not empty.
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case it := <-p.queue:
			err := p.tx.Deliver(ctx, it.set)
			kv := []any{"jti", it.jti, "event", it.ev.Type.Short()}
			switch {
			case err == nil:
				p.delivered.Add(1)
				logger.V(1).Info("Security event delivered", kv...)
			case ctx.Err() != nil:
				p.abandoned.Add(1)
				continue
			case errors.Is(err, ErrPossiblyDelivered):
				p.possiblyDelivered.Add(1)
				logger.Info("Security event refused after an unanswered attempt; the receiver may have it already",
					append(kv, "error", err.Error())...)
			case errors.Is(err, ErrRetriesExhausted):
				p.exhausted.Add(1)
				logger.Error(err, "Security event not delivered", kv...)
			default:
				p.refused.Add(1)
				logger.Error(err, "Security event refused by the receiver", kv...)
			}
			if p.onDone != nil {
				p.onDone(Result{JTI: it.jti, Event: it.ev, Err: err})
			}
		}
	}
}

// Stats are the publisher's counters since it was created.
type Stats struct {
	// Published events were signed and queued; Dropped ones found the queue full.
	Published, Dropped int64
	// Delivered were accepted; PossiblyDelivered were refused as invalid_request after an
	// attempt that got no answer (likely a duplicate jti); Refused were answered with another
	// non-retryable error; Exhausted ran out of retries; Abandoned were queued or being
	// retried when the publisher stopped.
	Delivered, PossiblyDelivered, Refused, Exhausted, Abandoned int64
	// GivenUp were kept in an outbox (Send) and given up, not accepted in time.
	GivenUp int64
	// Queued is the number of SETs waiting for a worker now.
	Queued int
	// Attempts by the receiver's answer: accepted (2xx), retryable (408, 429, 5xx, no
	// answer) and refused (anything else).
	AttemptsAccepted, AttemptsRetryable, AttemptsRefused int64
}

// Stats returns the counters (Collector exposes them to Prometheus).
func (p *Publisher) Stats() Stats {
	return Stats{
		Published: p.published.Load(), Dropped: p.dropped.Load(),
		Delivered: p.delivered.Load(), PossiblyDelivered: p.possiblyDelivered.Load(), Refused: p.refused.Load(),
		Exhausted: p.exhausted.Load(), Abandoned: p.abandoned.Load(), GivenUp: p.givenUp.Load(),
		Queued:            len(p.queue),
		AttemptsAccepted:  p.tx.attempts.accepted.Load(),
		AttemptsRetryable: p.tx.attempts.retryable.Load(),
		AttemptsRefused:   p.tx.attempts.refused.Load(),
	}
}

// Signer is the publisher's signer (its PublicJWKS is what receivers verify with).
func (p *Publisher) Signer() *Signer { return p.signer }
