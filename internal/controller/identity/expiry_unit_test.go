package identity

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/governance"
)

// The lifetime phase judges expiry by the injected clock: spec.ttl from creation, or
// spec.expiresAt; a value that does not parse blocks provisioning without expiring anything;
// an expiry moved to the future clears the Expired condition.
func TestLifetimeFollowsTheClock(t *testing.T) {
	created := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakePassiveClock(created)
	r := &Reconciler{Clock: clock}
	identity := func(spec scimv1.ServiceIdentitySpec) *scimv1.ServiceIdentity {
		return &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}, Spec: spec}
	}
	cases := []struct {
		name        string
		spec        scimv1.ServiceIdentitySpec
		at          time.Duration // after creation
		wantExpired bool
		wantErr     bool
		wantExpiry  time.Time
	}{
		{name: "no expiry", at: 100 * 24 * time.Hour},
		{name: "ttl running", spec: scimv1.ServiceIdentitySpec{TTL: scimv1.DurationOf(time.Hour)}, at: time.Hour - time.Nanosecond,
			wantExpiry: created.Add(time.Hour)},
		{name: "ttl reached", spec: scimv1.ServiceIdentitySpec{TTL: scimv1.DurationOf(time.Hour)}, at: time.Hour,
			wantExpired: true, wantExpiry: created.Add(time.Hour)},
		{name: "expiresAt passed", spec: scimv1.ServiceIdentitySpec{ExpiresAt: scimv1.TimestampOf(created.Add(time.Minute))},
			at: 2 * time.Minute, wantExpired: true, wantExpiry: created.Add(time.Minute)},
		{name: "expiresAt wins over ttl", spec: scimv1.ServiceIdentitySpec{ExpiresAt: scimv1.TimestampOf(created.Add(48 * time.Hour)),
			TTL: scimv1.DurationOf(time.Hour)}, at: 2 * time.Hour, wantExpiry: created.Add(48 * time.Hour)},
		{name: "ttl that does not parse", spec: scimv1.ServiceIdentitySpec{TTL: ptr.To(scimv1.Duration("soon"))}, at: time.Hour,
			wantErr: true},
		{name: "expiresAt that does not parse", spec: scimv1.ServiceIdentitySpec{ExpiresAt: ptr.To(scimv1.Timestamp("tomorrow"))},
			at: time.Hour, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock.SetTime(created.Add(c.at))
			si := identity(c.spec)
			err, expired := r.lifetime(si, governance.Policy{})
			if expired != c.wantExpired || (err != nil) != c.wantErr {
				t.Fatalf("expired=%v err=%v, want expired=%v err=%v", expired, err, c.wantExpired, c.wantErr)
			}
			got := time.Time{}
			if si.Status.ExpiresAt != nil {
				got = si.Status.ExpiresAt.Time
			}
			if !got.Equal(c.wantExpiry) {
				t.Fatalf("status.expiresAt = %s, want %s", got, c.wantExpiry)
			}
		})
	}

	t.Run("extended after expiry", func(t *testing.T) {
		clock.SetTime(created.Add(2 * time.Hour))
		si := identity(scimv1.ServiceIdentitySpec{TTL: scimv1.DurationOf(3 * time.Hour)})
		meta.SetStatusCondition(&si.Status.Conditions, metav1.Condition{Type: scimv1.ConditionExpired, Status: metav1.ConditionTrue, Reason: scimv1.ReasonExpired})
		deprovisioned := metav1.NewTime(created.Add(time.Hour))
		si.Status.DeprovisionedAt = &deprovisioned
		if err, expired := r.lifetime(si, governance.Policy{}); err != nil || expired {
			t.Fatalf("expired=%v err=%v, want a live identity", expired, err)
		}
		if c := meta.FindStatusCondition(si.Status.Conditions, scimv1.ConditionExpired); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Extended" {
			t.Fatalf("Expired condition = %+v, want False/Extended", c)
		}
		if si.Status.DeprovisionedAt != nil {
			t.Fatal("deprovisionedAt kept after the expiry was extended")
		}
	})
}
