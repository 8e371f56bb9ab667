package scim

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func (l *Limiter) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, q := range l.queues {
		for _, w := range q {
			if !w.gone {
				n++
			}
		}
	}
	return n
}

func waitQueued(t *testing.T, l *Limiter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.queued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued, want %d", l.queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The tokens go to revocations first, then provisioning in arrival order, then sweeps,
// whatever order they arrived in.
func TestLimiterServesRevocationsFirst(t *testing.T) {
	l := NewLimiter(5, 1) // a token every 200 ms: time to queue everyone before the first
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err) // the burst
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	start := func(name string, ctx context.Context) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Wait(ctx); err != nil {
				t.Error(name, err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		}()
	}
	ctx := context.Background()
	start("sweep", WithPriority(ctx, PrioritySweep))
	waitQueued(t, l, 1)
	for i, name := range []string{"provision-1", "provision-2", "provision-3"} {
		start(name, ctx)
		waitQueued(t, l, 2+i)
	}
	start("revoke-1", Urgent(ctx))
	waitQueued(t, l, 5)
	start("revoke-2", WithPriority(ctx, PriorityRevocation))
	waitQueued(t, l, 6)
	wg.Wait()
	want := []string{"revoke-1", "revoke-2", "provision-1", "provision-2", "provision-3", "sweep"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

// A waiter that gives up takes no token from the others, and the limiter goes back to the
// fast path once nobody waits.
func TestLimiterCancelledWaiter(t *testing.T) {
	l := NewLimiter(rate.Every(200*time.Millisecond), 1)
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx) }()
	waitQueued(t, l, 1)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled Wait = %v, want context.Canceled", err)
	}
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := l.queued(); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
	var nilLimiter *Limiter
	if err := nilLimiter.Wait(context.Background()); err != nil {
		t.Fatalf("a nil limiter waits for nothing: %v", err)
	}
}
