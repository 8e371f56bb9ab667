package controller

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	clocktesting "k8s.io/utils/clock/testing"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

func TestStatusLabel(t *testing.T) {
	for status, want := range map[int]string{
		0: "0", 200: "200", 201: "201", 204: "204", 401: "401", 403: "403", 404: "404", 409: "409", 412: "412",
		429: "429", 503: "503", 100: "1xx", 202: "2xx", 302: "3xx", 418: "4xx", 499: "4xx", 599: "5xx",
		600: "other", 999: "other", -1: "other", 99: "other",
	} {
		if got := statusLabel(status); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", status, got, want)
		}
	}
	seen := sets.New[string]()
	for status := -1; status <= 1000; status++ {
		seen.Insert(statusLabel(status))
	}
	if !seen.Equal(sets.New(statusLabels...)) {
		t.Errorf("labels of the codes -1..1000: %v, statusLabels: %v", sets.List(seen), statusLabels)
	}
	if got := methodLabel("PROPFIND"); got != "other" {
		t.Errorf("methodLabel(PROPFIND) = %q", got)
	}
	if got := methodLabel(http.MethodPatch); got != http.MethodPatch {
		t.Errorf("methodLabel(PATCH) = %q", got)
	}
}

// seriesWith counts the series of c that carry label target=key.
func seriesWith(t *testing.T, c prometheus.Collector, key string) int {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, lp := range pb.GetLabel() {
			if lp.GetName() == "target" && lp.GetValue() == key {
				n++
			}
		}
	}
	return n
}

func TestHostileStatusCodesMakeBoundedSeries(t *testing.T) {
	key := "ScimTarget/unit-metrics/hostile"
	observe := observeRequest(key)
	for status := 100; status <= 999; status++ {
		observe(http.MethodGet, status, time.Millisecond)
	}
	if n := seriesWith(t, scimRequests, key); n > len(statusLabels) {
		t.Errorf("%d series for one target and method, want at most %d", n, len(statusLabels))
	}
	if got := testutil.ToFloat64(scimRequests.WithLabelValues(key, http.MethodGet, "other")); got != 400 {
		t.Errorf("600-999 counted under other: %v, want 400", got)
	}
}

func TestForgetTargetMetrics(t *testing.T) {
	gone, kept := "ScimTarget/unit-metrics/gone", "ScimTarget/unit-metrics/kept"
	for _, key := range []string{gone, kept} {
		observeRequest(key)(http.MethodPost, 201, time.Millisecond)
		driftCorrections.WithLabelValues(key, "updated").Inc()
		orphanAccounts.WithLabelValues(key).Set(2)
	}
	vectors := []prometheus.Collector{scimRequests, scimRequestDuration, driftCorrections, orphanAccounts}
	for i, v := range vectors {
		if n := seriesWith(t, v, gone); n != 1 {
			t.Fatalf("vector %d: %d series of %s before, want 1", i, n, gone)
		}
	}
	forgetTargetMetrics(gone)
	for i, v := range vectors {
		if n := seriesWith(t, v, gone); n != 0 {
			t.Errorf("vector %d: %d series of the forgotten target remain", i, n)
		}
		if n := seriesWith(t, v, kept); n != 1 {
			t.Errorf("vector %d: %d series of another target, want 1", i, n)
		}
	}
}

func TestOwnerChecksAreBounded(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	o := &ownerChecks{size: 3}
	for i := range 10 { // a tenant changing spec.owner again and again
		o.put(fmt.Sprintf("owner-%d", i), ownerCheck{state: scimv1.OwnerActive, at: now})
	}
	if n := o.entries().Len(); n != 3 {
		t.Fatalf("%d answers cached, want the cap 3", n)
	}
	if _, ok := o.get("owner-0", now, time.Hour); ok {
		t.Error("the least recently used answer is still cached")
	}
	if _, ok := o.get("owner-9", now, time.Hour); !ok {
		t.Error("the newest answer is not cached")
	}
	if _, ok := o.get("owner-9", now.Add(time.Hour), time.Hour); ok {
		t.Error("an answer as old as its ttl is used")
	}
	if n := o.entries().Len(); n != 2 {
		t.Errorf("an expired answer stays cached: %d entries", n)
	}

	var zero ownerChecks // the reconciler's field: ready to use, at the default cap
	zero.put("k", ownerCheck{at: now})
	if _, ok := zero.get("k", now, time.Minute); !ok || zero.size != ownerCacheSize {
		t.Errorf("zero value: cached %v, size %d", ok, zero.size)
	}
}

func TestSweepFlagsOnlyWhatTheTargetConcerns(t *testing.T) {
	cst := &targets.Target{Kind: scimv1.KindClusterScimTarget, Name: "shared"}
	s := &sweep{t: cst}
	ref := scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: "shared"}
	for _, tc := range []struct {
		name string
		si   scimv1.ServiceIdentity
		want bool
	}{
		{name: "references the target", want: true,
			si: scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "a"}, Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{ref}}}},
		{name: "has an account on record there (withdrawn)", want: true,
			si: scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "b"}, Status: scimv1.ServiceIdentityStatus{
				Targets: []scimv1.IdentityTargetStatus{{Kind: scimv1.KindClusterScimTarget, Name: "shared", State: scimv1.TargetStateDeprovisioned}}}}},
		{name: "named by a crafted externalId, nothing to do with the target",
			si: scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "c"}, Spec: scimv1.ServiceIdentitySpec{
				TargetRefs: []scimv1.TargetReference{{Name: "own"}}}}},
	} {
		if got := s.concerns(&tc.si); got != tc.want {
			t.Errorf("%s: concerns = %v", tc.name, got)
		}
	}

	f := newSweepFlags()
	if !f.watches("anywhere") {
		t.Error("without --watch-namespaces every namespace is watched")
	}
	f.watched = sets.New("team-a", "scim-operator-system")
	if f.watches("team-b") || !f.watches("team-a") {
		t.Error("with --watch-namespaces only those namespaces are watched")
	}
}

// The revocation clock forgets its oldest marks past its bound, and the first mark counts.
func TestRevocationClockIsBounded(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	c := newRevocationClock(clk)
	c.mark("a")
	first := clk.Now()
	clk.SetTime(first.Add(time.Second))
	c.mark("a")
	if v, _ := c.seen.Get("a"); !v.(time.Time).Equal(first) {
		t.Fatalf("a second mark moved the start to %v", v)
	}
	for i := range revocationClockSize + 10 {
		c.mark(fmt.Sprintf("w-%d", i))
	}
	if n := c.seen.Len(); n > revocationClockSize {
		t.Fatalf("the clock holds %d marks, more than its bound %d", n, revocationClockSize)
	}
}
