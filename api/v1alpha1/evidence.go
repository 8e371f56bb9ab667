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
		return false, "no account on record"
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
	if e.Active != nil && !*e.Active && e.State == TargetStateSuspended {
		return true, "the target showed the account inactive (active=false) when it was last read"
	}
	if e.State == TargetStateDeprovisioned && e.ID == "" && e.Revocation == nil && e.Active == nil {
		return true, "no account was ever made there (the target does not exist)"
	}
	if e.Active != nil && *e.Active {
		return false, "the target last showed the account active (active=true)"
	}
	return false, fmt.Sprintf("no evidence from the target that the account is inactive (state %s)", orNone(string(e.State)))
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
