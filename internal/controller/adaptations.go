package controller

import (
	"fmt"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// Adaptation names: how the operator works around a provider's dialect, shown on the
// target's status.adaptations.
const (
	AdaptListWithoutFilter = "ListWithoutFilter"
	AdaptPerIdentityReads  = "PerIdentityReads"
	AdaptUpdateWithPut     = "UpdateWithPut"
	AdaptMatchByUserName   = "MatchByUserName"
	AdaptNoETags           = "NoETags"
)

// adaptations lists the adaptations in effect on a target, from its discovered (or
// overridden) capabilities, its compatibility settings and its last sweep.
func adaptations(t *Target) []scimv1.Adaptation {
	var out []scimv1.Adaptation
	add := func(name, format string, args ...any) {
		out = append(out, scimv1.Adaptation{Name: name, Message: truncate(fmt.Sprintf(format, args...), 512)})
	}
	caps, compat := t.Status.Capabilities, t.Spec.Compatibility
	switch {
	case compat != nil && compat.PatchMode == scimv1.PatchModePut:
		add(AdaptUpdateWithPut, "spec.compatibility.patchMode is Put: accounts are updated with PUT of the whole resource")
	case (compat == nil || compat.PatchMode != scimv1.PatchModePatch) && caps != nil && caps.Patch != nil && !*caps.Patch:
		add(AdaptUpdateWithPut, "The provider does not support PATCH: accounts are updated with PUT of the whole resource")
	}
	if caps != nil && (caps.ETag == nil || !*caps.ETag) {
		add(AdaptNoETags, "The provider does not support ETags: updates are sent without If-Match, and ownership is proven by a read before each write")
	}
	if compat != nil && compat.MatchAttribute == scimv1.MatchUserName {
		add(AdaptMatchByUserName, "spec.compatibility.matchAttribute is userName: existing accounts are found by userName first")
	}
	if s := t.Status.Sweep; s != nil {
		switch s.Listing {
		case scimv1.SweepUnfiltered:
			add(AdaptListWithoutFilter, "%s", s.Message)
		case scimv1.SweepPerIdentity:
			add(AdaptPerIdentityReads, "%s", s.Message)
		}
	}
	return out
}
