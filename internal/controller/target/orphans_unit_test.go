package target

import (
	"testing"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

func TestUnitOrphanPolicyDefaultsByKind(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      string
		orphans   *scimv1.Orphans
		want      scimv1.OrphanPolicy
		defaulted bool
	}{
		{"a ScimTarget reports by default", scimv1.KindScimTarget, nil, scimv1.OrphanPolicyReport, true},
		{"a ClusterScimTarget deactivates by default", scimv1.KindClusterScimTarget, nil, scimv1.OrphanPolicyDeactivate, true},
		{"an interval alone keeps the default", scimv1.KindClusterScimTarget, &scimv1.Orphans{Interval: scimv1.DurationOf(time.Hour)}, scimv1.OrphanPolicyDeactivate, true},
		{"a ClusterScimTarget may report", scimv1.KindClusterScimTarget, &scimv1.Orphans{Policy: scimv1.OrphanPolicyReport}, scimv1.OrphanPolicyReport, false},
		{"a ScimTarget may delete", scimv1.KindScimTarget, &scimv1.Orphans{Policy: scimv1.OrphanPolicyDelete}, scimv1.OrphanPolicyDelete, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &targets.Target{Kind: tc.kind, Spec: &scimv1.ScimTargetSpec{Orphans: tc.orphans}}
			if got := orphanPolicy(target); got != tc.want {
				t.Fatalf("orphanPolicy = %s, want %s", got, tc.want)
			}
			if got := orphanPolicyDefaulted(target); got != tc.defaulted {
				t.Fatalf("orphanPolicyDefaulted = %v, want %v", got, tc.defaulted)
			}
		})
	}
}
