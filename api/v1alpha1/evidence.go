package v1alpha1

import "fmt"

// AccountOff decides, from what the target itself answered, whether the identity's account on
// this target is provably unusable: read back as gone (NotFound) or with active false after a
// revocation, or shown active=false as last read while the identity is suspended. Anything
// else is reported as still active, with why: an account left by deletionPolicy Orphan, one
// the target last showed active, and one with no evidence at all (not yet confirmed, or never
// read back). It is the one rule the controller's Events and every kubectl scim command use,
// so that nothing calls an account inactive that the target did not show inactive.
func (e *IdentityTargetStatus) AccountOff() (bool, string) {
	if e == nil {
		return false, "the operator has not reported on this target: no evidence the account is inactive"
	}
	// Whatever else the entry says, active=true as last read is never evidence of the opposite.
	if e.Active != nil && *e.Active {
		if ev := e.Revocation; ev != nil && ev.Result == RevocationOrphaned {
			return false, "deletionPolicy Orphan left the account as it was: still active on the target (active=true)"
		}
		return false, "the target last showed the account active (active=true)"
	}
	if ev := e.Revocation; ev != nil && e.State == TargetStateDeprovisioned {
		switch ev.Result {
		case RevocationNotFound:
			return true, fmt.Sprintf("the target confirmed the account gone (NotFound) at %s", ev.ConfirmedAt.UTC().Format("2006-01-02T15:04:05Z"))
		case RevocationInactive:
			return true, fmt.Sprintf("the target confirmed the account inactive (active=false) at %s", ev.ConfirmedAt.UTC().Format("2006-01-02T15:04:05Z"))
		case RevocationOrphaned:
			return false, "deletionPolicy Orphan left the account as it was: still active on the target"
		}
	}
	if e.Active != nil && !*e.Active {
		switch e.State {
		case TargetStateSuspended:
			return true, "the target showed the account inactive (active=false) when it was last read"
		case TargetStateError, TargetStateDeprovisioning:
			// active is what the last successful read showed; the step that failed since may
			// have changed the account (a reactivation whose answer was lost) with no read to
			// show it.
			return false, fmt.Sprintf("active=false is from a read before the last step, which failed (state %s): not confirmed", e.State)
		}
	}
	if e.State == TargetStateDeprovisioned && e.ID == "" && e.Revocation == nil && e.Active == nil {
		return true, "no account was ever made there (the target does not exist)"
	}
	return false, fmt.Sprintf("no evidence from the target that the account is inactive (state %s)", orNone(string(e.State)))
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
