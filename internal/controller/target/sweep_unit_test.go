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
