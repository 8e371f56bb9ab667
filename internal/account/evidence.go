package account

import (
	"fmt"
	"strings"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// EvidenceSummary says, for the Event that records a revocation (the identity, and its
// status, may be gone right after), what each target's own answer proves: an account is
// called inactive only on evidence read back from the target (AccountOff).
func EvidenceSummary(si *scimv1.ServiceIdentity) string {
	parts := make([]string, 0, len(si.Status.Targets))
	for i := range si.Status.Targets {
		e := &si.Status.Targets[i]
		off, why := e.AccountOff()
		state := "inactive"
		if !off {
			state = "STILL ACTIVE"
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", targets.Key(e.Kind, si.Namespace, e.Name), state, why))
	}
	if len(parts) == 0 {
		return "no target on record"
	}
	return strings.Join(parts, "; ")
}

// StillActive lists the targets on which the identity's account is not provably off.
func StillActive(si *scimv1.ServiceIdentity) []string {
	var out []string
	for i := range si.Status.Targets {
		if off, _ := si.Status.Targets[i].AccountOff(); !off {
			out = append(out, targets.Key(si.Status.Targets[i].Kind, si.Namespace, si.Status.Targets[i].Name))
		}
	}
	return out
}
