package metrics

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/sets"
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
	m := New(nil, nil)
	observe := m.Observer(key)
	for status := 100; status <= 999; status++ {
		observe(http.MethodGet, status, time.Millisecond)
	}
	if n := seriesWith(t, m.requests, key); n > len(statusLabels) {
		t.Errorf("%d series for one target and method, want at most %d", n, len(statusLabels))
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(key, http.MethodGet, "other")); got != 400 {
		t.Errorf("600-999 counted under other: %v, want 400", got)
	}
}

func TestForgetTargetMetrics(t *testing.T) {
	m := New(nil, nil)
	gone, kept := "ScimTarget/unit-metrics/gone", "ScimTarget/unit-metrics/kept"
	for _, key := range []string{gone, kept} {
		m.Observer(key)(http.MethodPost, 201, time.Millisecond)
		m.DriftCorrected(key, "updated")
		m.Orphans(key, 2)
	}
	vectors := []prometheus.Collector{m.requests, m.requestDuration, m.drift, m.orphans}
	for i, v := range vectors {
		if n := seriesWith(t, v, gone); n != 1 {
			t.Fatalf("vector %d: %d series of %s before, want 1", i, n, gone)
		}
	}
	m.ForgetTarget(gone)
	for i, v := range vectors {
		if n := seriesWith(t, v, gone); n != 0 {
			t.Errorf("vector %d: %d series of the forgotten target remain", i, n)
		}
		if n := seriesWith(t, v, kept); n != 1 {
			t.Errorf("vector %d: %d series of another target, want 1", i, n)
		}
	}
}

// The revocation clock forgets its oldest marks past its bound, and the first mark counts.
func TestRevocationClockIsBounded(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	c := New(nil, clk).Revocations
	c.Mark("a")
	first := clk.Now()
	clk.SetTime(first.Add(time.Second))
	c.Mark("a")
	if v, _ := c.seen.Get("a"); !v.(time.Time).Equal(first) {
		t.Fatalf("a second mark moved the start to %v", v)
	}
	for i := range RevocationClockSize + 10 {
		c.Mark(fmt.Sprintf("w-%d", i))
	}
	if n := c.seen.Len(); n > RevocationClockSize {
		t.Fatalf("the clock holds %d marks, more than its bound %d", n, RevocationClockSize)
	}
}
