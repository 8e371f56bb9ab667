package breaker

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

var breakerEpoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// breakerTarget is a ScimTarget allowing limit deprovisionings per interval, whose status
// records charged of them in a window that began at start (none when start is zero).
func breakerTarget(limit int32, interval time.Duration, start time.Time, charged int32, release, recorded string) *targets.Target {
	st := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "acme", UID: "uid-1"}}
	st.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: limit, Interval: scimv1.DurationOf(interval)}
	if release != "" {
		st.Annotations = map[string]string{scimv1.BreakerReleaseAnnotation: release}
	}
	if !start.IsZero() {
		st.Status.CircuitBreaker = &scimv1.BreakerStatus{WindowStart: metav1.NewTime(start), Charged: charged, Release: recorded,
			Namespaces: []scimv1.BreakerNamespace{{Namespace: "t", Charged: charged}}}
	}
	return targets.OfObject(st, "ops")
}

// The window on status is kept while it runs and holds the current release value; otherwise a
// new one starts now.
func TestCurrentWindow(t *testing.T) {
	now := breakerEpoch
	cases := []struct {
		name              string
		start             time.Time
		release, recorded string
		wantStart         time.Time
		wantCharged       int32
	}{
		{name: "no window yet", wantStart: now},
		{name: "running window", start: now.Add(-30 * time.Second), wantStart: now.Add(-30 * time.Second), wantCharged: 2},
		{name: "window just over", start: now.Add(-time.Minute), wantStart: now},
		{name: "window long over", start: now.Add(-24 * time.Hour), wantStart: now},
		{name: "window starting in the future (skew or a forged status)", start: now.Add(time.Hour), wantStart: now},
		{name: "release annotation set", start: now.Add(-time.Second), release: "r1", wantStart: now},
		{name: "release annotation changed", start: now.Add(-time.Second), release: "r2", recorded: "r1", wantStart: now},
		{name: "same release value", start: now.Add(-time.Second), release: "r1", recorded: "r1",
			wantStart: now.Add(-time.Second), wantCharged: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := breakerTarget(5, time.Minute, c.start, 2, c.release, c.recorded)
			w := currentWindow(tg, time.Minute, now)
			if !w.WindowStart.Time.Equal(c.wantStart) || w.Charged != c.wantCharged {
				t.Fatalf("window = %s charged %d, want %s charged %d", w.WindowStart.Time, w.Charged, c.wantStart, c.wantCharged)
			}
			if w.Release != c.release {
				t.Fatalf("release = %q, want the annotation's %q", w.Release, c.release)
			}
		})
	}
}

// Open follows the injected clock: a full window is open until the interval has passed since
// it began, and says when to look again.
func TestBreakerOpenFollowsTheClock(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(breakerEpoch)
	b := New(nil, nil, "ops", clock)
	tg := breakerTarget(3, time.Minute, breakerEpoch.Add(-10*time.Second), 3, "", "")

	open, msg, wait := b.Open(tg)
	if !open || wait != 50*time.Second {
		t.Fatalf("full window: open=%v wait=%s, want open for 50s", open, wait)
	}
	if !strings.Contains(msg, "maxDeletionsPerInterval=3") || !strings.Contains(msg, scimv1.BreakerReleaseAnnotation) {
		t.Fatalf("message does not say the limit and how to release it: %q", msg)
	}
	clock.SetTime(breakerEpoch.Add(49 * time.Second))
	if open, _, wait := b.Open(tg); !open || wait != time.Second {
		t.Fatalf("1s before the window ends: open=%v wait=%s, want open for 1s", open, wait)
	}
	clock.SetTime(breakerEpoch.Add(50 * time.Second))
	if open, _, _ := b.Open(tg); open {
		t.Fatal("still open once the interval passed")
	}

	under := breakerTarget(3, time.Minute, breakerEpoch, 2, "", "")
	if open, _, _ := b.Open(under); open {
		t.Fatal("open below the limit")
	}
	off := breakerTarget(3, time.Minute, breakerEpoch, 99, "", "")
	off.Spec.CircuitBreaker = nil
	if open, _, _ := b.Open(off); open {
		t.Fatal("open without spec.circuitBreaker")
	}
}

// Slots reserved on status and not used yet keep the breaker closed for this process, and a
// refund gives a slot back; neither survives the window.
func TestBreakerPoolSlots(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(breakerEpoch)
	b := New(nil, nil, "ops", clock)
	tg := breakerTarget(3, time.Minute, breakerEpoch, 3, "", "")
	p := b.pool(tg, "t")
	p.uid, p.windowStart, p.free = tg.Object.GetUID(), breakerEpoch, 1

	if open, _, _ := b.Open(tg); open {
		t.Fatal("open although this process holds a reserved slot")
	}
	if err := b.Charge(t.Context(), tg, "t"); err != nil { // served from the pool: no API call (the client is nil)
		t.Fatalf("charging a reserved slot: %v", err)
	}
	if open, _, _ := b.Open(tg); !open {
		t.Fatal("closed after the last reserved slot was used")
	}
	b.Refund(tg, "t")
	if open, _, _ := b.Open(tg); open {
		t.Fatal("open after a refund gave a slot back")
	}
	clock.SetTime(breakerEpoch.Add(time.Minute))
	next := breakerTarget(3, time.Minute, breakerEpoch.Add(time.Minute), 3, "", "")
	if open, _, _ := b.Open(next); !open {
		t.Fatal("a slot of the previous window kept the next full window closed")
	}
}

// Each namespace has its own share: a namespace whose share is used up pauses its own
// deletions only, and the message names it.
func TestBreakerSharesPerNamespace(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(breakerEpoch)
	b := New(nil, nil, "ops", clock)
	tg := breakerTarget(3, time.Minute, breakerEpoch, 3, "", "")
	tg.Status.CircuitBreaker.Namespaces = []scimv1.BreakerNamespace{{Namespace: "noisy", Charged: 3}}
	open, msg, _ := b.Open(tg)
	if !open || !strings.Contains(msg, `"noisy"`) || !strings.Contains(msg, "Other namespaces are not affected") {
		t.Fatalf("open=%v msg=%q, want open for namespace noisy only", open, msg)
	}
	var paused *OpenError
	if err := b.Charge(t.Context(), tg, "noisy"); !errors.As(err, &paused) || paused.Namespace != "noisy" {
		t.Fatalf("charging the full namespace: %v, want a OpenError for noisy", err)
	}
	p := b.pool(tg, "quiet")
	p.uid, p.windowStart, p.free = tg.Object.GetUID(), breakerEpoch, 1
	if err := b.Charge(t.Context(), tg, "quiet"); err != nil {
		t.Fatalf("another namespace is paused by noisy's deletions: %v", err)
	}
	b.Forget(tg.Key())
	if len(b.pools) != 0 {
		t.Fatalf("Forget left %d pools of the target", len(b.pools))
	}
}

// breakerStatusClient is a fake API server holding tg's object with its status subresource.
func breakerStatusClient(t *testing.T, tg *targets.Target) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := scimv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	obj := tg.Object.DeepCopyObject().(client.Object)
	obj.SetResourceVersion("")
	return fake.NewClientBuilder().WithScheme(s).WithObjects(obj).WithStatusSubresource(obj).Build()
}

// A window lists at most maxBreakerNamespaces namespaces: once full, a new namespace is
// charged to the shared bucket, shown as (other), and a refund goes back to that bucket.
func TestBreakerCapsNamespaces(t *testing.T) {
	tg := breakerTarget(1, time.Hour, breakerEpoch, 0, "", "")
	rows := make([]scimv1.BreakerNamespace, 0, maxBreakerNamespaces-1)
	for i := range maxBreakerNamespaces - 1 {
		rows = append(rows, scimv1.BreakerNamespace{Namespace: fmt.Sprintf("ns-%d", i), Charged: 1})
	}
	tg.Status.CircuitBreaker.Namespaces, tg.Status.CircuitBreaker.Charged = rows, int32(len(rows))
	c := breakerStatusClient(t, tg)
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(tg.Object), tg.Object); err != nil {
		t.Fatal(err)
	}
	b := New(c, c, "ops", clocktesting.NewFakePassiveClock(breakerEpoch))
	bucket, err := b.ChargeBucket(t.Context(), tg, "newcomer")
	if err != nil || bucket != SharedBucket {
		t.Fatalf("charging a namespace beyond the cap: bucket %q, %v; want the shared bucket", bucket, err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(tg.Object), tg.Object); err != nil {
		t.Fatal(err)
	}
	if n := len(tg.Status.CircuitBreaker.Namespaces); n != maxBreakerNamespaces || namespaceCharged(tg.Status.CircuitBreaker, SharedBucket) != 1 {
		t.Fatalf("status lists %d namespaces (shared charged %d), want %d with the shared bucket charged once",
			n, namespaceCharged(tg.Status.CircuitBreaker, SharedBucket), maxBreakerNamespaces)
	}
	var open *OpenError
	if _, err := b.ChargeBucket(t.Context(), tg, "another"); !errors.As(err, &open) || open.Namespace != SharedBucket ||
		!strings.Contains(err.Error(), "(other)") {
		t.Fatalf("the shared share is used up: %v, want a OpenError for (other)", err)
	}
	if isOpen, msg, _ := b.Open(tg); !isOpen || !strings.Contains(msg, "(other)") {
		t.Fatalf("open=%v msg=%q, want the shared bucket named (other)", isOpen, msg)
	}
	if _, err := b.ChargeBucket(t.Context(), tg, "ns-7"); !errors.As(err, &open) || open.Namespace != "ns-7" {
		t.Fatalf("a listed namespace keeps its own share: %v", err)
	}
}

// Pools of windows that are over are dropped from memory by later charges.
func TestBreakerPrunesPastWindows(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(breakerEpoch)
	b := New(nil, nil, "ops", clock)
	tg := breakerTarget(3, time.Minute, breakerEpoch, 0, "", "")
	for i := range 200 {
		p := b.pool(tg, fmt.Sprintf("ns-%d", i))
		p.uid, p.windowStart, p.until, p.free = tg.Object.GetUID(), breakerEpoch, breakerEpoch.Add(time.Minute), 1
		b.release(p)
	}
	live := b.pool(tg, "ns-0") // held by a caller: never dropped under it
	clock.SetTime(breakerEpoch.Add(2 * time.Minute))
	b.release(b.pool(tg, "fresh"))
	b.mu.Lock()
	n := len(b.pools)
	b.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d pools kept after their windows ended, want 2 (one held, one never filled and still held at the sweep)", n)
	}
	b.release(live)
	clock.SetTime(breakerEpoch.Add(4 * time.Minute))
	b.release(b.pool(tg, "later"))
	b.mu.Lock()
	n = len(b.pools)
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d pools kept, want only the one just asked for", n)
	}
}
