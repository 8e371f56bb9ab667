package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

var breakerEpoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// breakerTarget is a ScimTarget allowing limit deprovisionings per interval, whose status
// records charged of them in a window that began at start (none when start is zero).
func breakerTarget(limit int32, interval time.Duration, start time.Time, charged int32, release, recorded string) *Target {
	st := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "acme", UID: "uid-1"}}
	st.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: limit, Interval: scimv1.DurationOf(interval)}
	if release != "" {
		st.Annotations = map[string]string{breakerReleaseAnnotation: release}
	}
	if !start.IsZero() {
		st.Status.CircuitBreaker = &scimv1.BreakerStatus{WindowStart: metav1.NewTime(start), Charged: charged, Release: recorded,
			Namespaces: []scimv1.BreakerNamespace{{Namespace: "t", Charged: charged}}}
	}
	return viewOf(st, "ops")
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
	b := NewBreaker(nil, nil, "ops")
	b.Clock = clock
	tg := breakerTarget(3, time.Minute, breakerEpoch.Add(-10*time.Second), 3, "", "")

	open, msg, wait := b.Open(tg)
	if !open || wait != 50*time.Second {
		t.Fatalf("full window: open=%v wait=%s, want open for 50s", open, wait)
	}
	if !strings.Contains(msg, "maxDeletionsPerInterval=3") || !strings.Contains(msg, breakerReleaseAnnotation) {
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
	b := NewBreaker(nil, nil, "ops")
	b.Clock = clock
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
	b := NewBreaker(nil, nil, "ops")
	b.Clock = clock
	tg := breakerTarget(3, time.Minute, breakerEpoch, 3, "", "")
	tg.Status.CircuitBreaker.Namespaces = []scimv1.BreakerNamespace{{Namespace: "noisy", Charged: 3}}
	open, msg, _ := b.Open(tg)
	if !open || !strings.Contains(msg, `"noisy"`) || !strings.Contains(msg, "Other namespaces are not affected") {
		t.Fatalf("open=%v msg=%q, want open for namespace noisy only", open, msg)
	}
	var paused *BreakerOpenError
	if err := b.Charge(t.Context(), tg, "noisy"); !errors.As(err, &paused) || paused.Namespace != "noisy" {
		t.Fatalf("charging the full namespace: %v, want a BreakerOpenError for noisy", err)
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

func TestNamespaceOf(t *testing.T) {
	for in, want := range map[string]string{"c1/ns/name": "ns", "c1/ns": "", "c2/ns/name": "", "": "", "c1//x": ""} {
		if got := namespaceOf("c1", in); got != want {
			t.Errorf("namespaceOf(%q) = %q, want %q", in, got, want)
		}
	}
}
