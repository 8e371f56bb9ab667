package v1alpha1

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AccountOff calls an account off only on what the target answered; every other entry is
// still active, and says why.
func TestAccountOff(t *testing.T) {
	yes, no := true, false
	at := metav1.NewTime(time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC))
	ev := func(r RevocationResult) *RevocationEvidence { return &RevocationEvidence{Result: r, ConfirmedAt: at} }
	cases := []struct {
		name   string
		entry  *IdentityTargetStatus
		off    bool
		reason string
	}{
		{"no entry", nil, false, "has not reported"},
		{"deleted, read back gone", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1", Active: &no, Revocation: ev(RevocationNotFound)}, true, "gone (NotFound) at 2026-12-07T06:00:00Z"},
		{"deactivated, read back inactive", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1", Active: &no, Revocation: ev(RevocationInactive)}, true, "inactive (active=false) at 2026-12-07T06:00:00Z"},
		{"suspended, read back inactive", &IdentityTargetStatus{State: TargetStateSuspended, ID: "u1", Active: &no}, true, "showed the account inactive"},
		{"target that never existed", &IdentityTargetStatus{State: TargetStateDeprovisioned}, true, "no account was ever made"},

		{"orphaned, left active", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1", Active: &yes, Revocation: ev(RevocationOrphaned)}, false, "deletionPolicy Orphan left the account as it was"},
		{"orphaned, active unknown", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1", Revocation: ev(RevocationOrphaned)}, false, "deletionPolicy Orphan"},
		{"orphaned, never read", &IdentityTargetStatus{State: TargetStateDeprovisioned, Revocation: ev(RevocationOrphaned)}, false, "deletionPolicy Orphan"},
		{"deprovisioned without evidence", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1"}, false, "no evidence"},
		{"deprovisioned, active=false without evidence", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1", Active: &no}, false, "no evidence"},
		{"evidence contradicted by active=true", &IdentityTargetStatus{State: TargetStateDeprovisioned, ID: "u1", Active: &yes, Revocation: ev(RevocationInactive)}, false, "active=true"},
		{"evidence of an earlier revocation, now failing", &IdentityTargetStatus{State: TargetStateError, ID: "u1", Revocation: ev(RevocationNotFound)}, false, "no evidence"},
		{"evidence of an earlier revocation, being redone", &IdentityTargetStatus{State: TargetStateDeprovisioning, ID: "u1", Revocation: ev(RevocationInactive)}, false, "no evidence"},
		{"suspended but the target kept it active", &IdentityTargetStatus{State: TargetStateSuspended, ID: "u1", Active: &yes}, false, "active=true"},
		{"suspended, never read", &IdentityTargetStatus{State: TargetStateSuspended, ID: "u1"}, false, "state Suspended"},
		{"active=false, then a step failed", &IdentityTargetStatus{State: TargetStateError, ID: "u1", Active: &no}, false, "which failed (state Error)"},
		{"active=false, deprovisioning blocked", &IdentityTargetStatus{State: TargetStateDeprovisioning, ID: "u1", Active: &no}, false, "which failed (state Deprovisioning)"},
		{"provisioned", &IdentityTargetStatus{State: TargetStateProvisioned, ID: "u1", Active: &yes}, false, "active=true"},
		{"pending", &IdentityTargetStatus{State: TargetStatePending}, false, "state Pending"},
		{"no state", &IdentityTargetStatus{}, false, "state unknown"},
	}
	for _, c := range cases {
		off, reason := c.entry.AccountOff()
		if off != c.off || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: AccountOff() = %t, %q; want %t, containing %q", c.name, off, reason, c.off, c.reason)
		}
	}
}
