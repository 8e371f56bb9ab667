package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

const (
	defaultOrphanInterval = time.Hour
	orphanNamesShown      = 10
	orphanPageSize        = 200
)

func orphanPolicy(t *Target) (scimv1.OrphanPolicy, time.Duration) {
	policy, interval := scimv1.OrphanPolicyReport, defaultOrphanInterval
	if o := t.Spec.Orphans; o != nil {
		if o.Policy != "" {
			policy = o.Policy
		}
		if o.Interval != nil {
			if d, err := o.Interval.Parse(); err == nil {
				interval = d
			}
		}
	}
	return policy, interval
}

// cleanOrphans applies the orphan policy to each orphan through the Deprovisioner's account
// step (deactivated first, charged to the breaker). It stops where the breaker pauses it; the
// next scan continues.
func (r *TargetReconciler) cleanOrphans(ctx context.Context, t *Target, c *scim.Client, orphans []scim.Resource, policy scimv1.OrphanPolicy) (int, error) {
	acted := 0
	for _, u := range orphans {
		if active, present := u.Active(); policy == scimv1.OrphanPolicyDeactivate && present && !active {
			continue
		}
		done, err := r.Deprovisioner.Orphan(ctx, t, c, u, policy)
		if err != nil {
			return acted, fmt.Errorf("%s orphaned account %q: %w", strings.ToLower(string(policy)), scim.Sanitize(u.UserName(), 256), err)
		}
		if !done {
			return acted, nil
		}
		acted++
	}
	return acted, nil
}
