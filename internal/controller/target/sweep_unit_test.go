package target

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

func TestSweepCovers(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(now.Add(-d)); return &m }
	target := func(s *scimv1.SweepStatus, resync time.Duration) *targets.Target {
		return &targets.Target{Spec: &scimv1.ScimTargetSpec{ResyncInterval: scimv1.DurationOf(resync)}, Status: &scimv1.ScimTargetStatus{Sweep: s}}
	}
	for _, tc := range []struct {
		name  string
		t     *targets.Target
		wants bool
	}{
		{"never swept", target(nil, 10*time.Minute), false},
		{"swept with a filtered list a minute ago", target(&scimv1.SweepStatus{Listing: scimv1.SweepFiltered, LastSweepTime: at(time.Minute)}, 10*time.Minute), true},
		{"swept with an unfiltered list", target(&scimv1.SweepStatus{Listing: scimv1.SweepUnfiltered, LastSweepTime: at(time.Minute)}, 10*time.Minute), true},
		{"the provider cannot list", target(&scimv1.SweepStatus{Listing: scimv1.SweepPerIdentity, LastSweepTime: at(time.Minute)}, 10*time.Minute), false},
		{"the last sweep is two intervals late", target(&scimv1.SweepStatus{Listing: scimv1.SweepFiltered, LastSweepTime: at(21 * time.Minute)}, 10*time.Minute), false},
		{"a shorter orphan interval sweeps more often", &targets.Target{Spec: &scimv1.ScimTargetSpec{ResyncInterval: scimv1.DurationOf(time.Hour),
			Orphans: &scimv1.Orphans{Interval: scimv1.DurationOf(time.Minute)}},
			Status: &scimv1.ScimTargetStatus{Sweep: &scimv1.SweepStatus{Listing: scimv1.SweepFiltered, LastSweepTime: at(5 * time.Minute)}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := targets.SweepCovers(tc.t, now); got != tc.wants {
				t.Fatalf("sweepCovers = %v, want %v", got, tc.wants)
			}
		})
	}
}

// A sweep is due an interval after the last, at once when there was none, and a request brings
// it forward to no sooner than sweepRequestGap after the last.
func TestSweepDue(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	swept := func(ago time.Duration, handled string) *scimv1.SweepStatus {
		at := metav1.NewTime(now.Add(-ago))
		return &scimv1.SweepStatus{LastSweepTime: &at, LastHandledRequest: handled}
	}
	for _, tc := range []struct {
		name      string
		last      *scimv1.SweepStatus
		requested string
		want      time.Duration
	}{
		{"never swept", nil, "", 0},
		{"swept a minute ago", swept(time.Minute, ""), "", 9 * time.Minute},
		{"swept an interval ago", swept(10*time.Minute, ""), "", 0},
		{"a request a second after the last sweep waits out the gap", swept(time.Second, ""), "now", sweepRequestGap - time.Second},
		{"a request well after the last sweep sweeps at once", swept(time.Minute, ""), "now", sweepRequestGap - time.Minute},
		{"a request already handled changes nothing", swept(time.Minute, "now"), "now", 9 * time.Minute},
	} {
		if got := sweepDue(tc.last, tc.requested, 10*time.Minute, now); got != tc.want {
			t.Errorf("%s: due in %s, want %s", tc.name, got, tc.want)
		}
	}
}
