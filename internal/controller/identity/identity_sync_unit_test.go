package identity

import (
	"strings"
	"testing"
	"time"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

// A provider's ETag is recorded only when status can hold it as it is.
func TestRecordedVersionIsBounded(t *testing.T) {
	for v, want := range map[string]string{
		`W/"1"`:                   `W/"1"`,
		strings.Repeat("x", 2048): "",
		"a\x1bb":                  "",
	} {
		if got := recordedVersion(scim.Resource{"meta": map[string]any{"version": v}}); got != want {
			t.Errorf("recordedVersion(%.20q) = %.20q, want %.20q", v, got, want)
		}
	}
}

func TestCheckDue(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const interval = 10 * time.Minute
	for _, tc := range []struct {
		name            string
		settled, covers bool
		last            time.Time
		wait            time.Duration
		skip            bool
	}{
		{name: "a changed, requested or flagged account is read", settled: false, covers: true, last: now},
		{name: "covered by sweeps: no read, however old the last one", settled: true, covers: true, wait: interval, skip: true},
		{name: "not covered, verified recently: no read until the interval", settled: true, last: now.Add(-4 * time.Minute), wait: 6 * time.Minute, skip: true},
		{name: "not covered, verified an interval ago: read", settled: true, last: now.Add(-interval)},
		{name: "not covered, never verified: read", settled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait, skip := checkDue(tc.settled, tc.covers, tc.last, now, interval)
			if wait != tc.wait || skip != tc.skip {
				t.Fatalf("checkDue = (%v, %v), want (%v, %v)", wait, skip, tc.wait, tc.skip)
			}
		})
	}
}
