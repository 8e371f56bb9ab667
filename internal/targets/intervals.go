package targets

import (
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

const (
	// DefaultResync is how often a target is probed and swept, and its identities checked,
	// when spec.ResyncInterval is unset.
	DefaultResync = 10 * time.Minute
	// sweepCoverSlack is how late a sweep may be before the identities stop relying on it and
	// read their own accounts again.
	sweepCoverSlack = time.Minute
)

func ResyncInterval(spec *scimv1.ScimTargetSpec) time.Duration {
	if spec.ResyncInterval != nil {
		if d, err := spec.ResyncInterval.Parse(); err == nil {
			return d
		}
	}
	return DefaultResync
}

// SweepInterval is how often the target is swept: its resync interval, or its orphan
// interval when that is shorter.
func SweepInterval(t *Target) time.Duration {
	interval := ResyncInterval(t.Spec)
	if o := t.Spec.Orphans; o != nil && o.Interval != nil {
		if d, err := o.Interval.Parse(); err == nil && d < interval {
			interval = d
		}
	}
	return interval
}

// SweepCovers reports whether the target's sweeps check its accounts, so that an identity in
// step needs no call of its own: the last sweep listed the accounts, and not too long ago.
func SweepCovers(t *Target, now time.Time) bool {
	s := t.Status.Sweep
	return s != nil && s.Listing != scimv1.SweepPerIdentity && s.LastSweepTime != nil &&
		now.Sub(s.LastSweepTime.Time) < 2*SweepInterval(t)+sweepCoverSlack
}
