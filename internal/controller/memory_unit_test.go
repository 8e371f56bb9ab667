package controller

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

func TestOwnerChecksAreBounded(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	o := &ownerChecks{size: 3}
	for i := range 10 { // a tenant changing spec.owner again and again
		o.put(fmt.Sprintf("owner-%d", i), ownerCheck{state: scimv1.OwnerActive, at: now})
	}
	if n := o.entries().Len(); n != 3 {
		t.Fatalf("%d answers cached, want the cap 3", n)
	}
	if _, ok := o.get("owner-0", now, time.Hour); ok {
		t.Error("the least recently used answer is still cached")
	}
	if _, ok := o.get("owner-9", now, time.Hour); !ok {
		t.Error("the newest answer is not cached")
	}
	if _, ok := o.get("owner-9", now.Add(time.Hour), time.Hour); ok {
		t.Error("an answer as old as its ttl is used")
	}
	if n := o.entries().Len(); n != 2 {
		t.Errorf("an expired answer stays cached: %d entries", n)
	}

	var zero ownerChecks // the reconciler's field: ready to use, at the default cap
	zero.put("k", ownerCheck{at: now})
	if _, ok := zero.get("k", now, time.Minute); !ok || zero.size != ownerCacheSize {
		t.Errorf("zero value: cached %v, size %d", ok, zero.size)
	}
}

func TestSweepFlagsOnlyWhatTheTargetConcerns(t *testing.T) {
	cst := &targets.Target{Kind: scimv1.KindClusterScimTarget, Name: "shared"}
	s := &sweep{t: cst}
	ref := scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: "shared"}
	for _, tc := range []struct {
		name string
		si   scimv1.ServiceIdentity
		want bool
	}{
		{name: "references the target", want: true,
			si: scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "a"}, Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{ref}}}},
		{name: "has an account on record there (withdrawn)", want: true,
			si: scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "b"}, Status: scimv1.ServiceIdentityStatus{
				Targets: []scimv1.IdentityTargetStatus{{Kind: scimv1.KindClusterScimTarget, Name: "shared", State: scimv1.TargetStateDeprovisioned}}}}},
		{name: "named by a crafted externalId, nothing to do with the target",
			si: scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "c"}, Spec: scimv1.ServiceIdentitySpec{
				TargetRefs: []scimv1.TargetReference{{Name: "own"}}}}},
	} {
		if got := s.concerns(&tc.si); got != tc.want {
			t.Errorf("%s: concerns = %v", tc.name, got)
		}
	}

	f := account.NewSweepFlags()
	if !f.Watches("anywhere") {
		t.Error("without --watch-namespaces every namespace is watched")
	}
	f.Watched = sets.New("team-a", "scim-operator-system")
	if f.Watches("team-b") || !f.Watches("team-a") {
		t.Error("with --watch-namespaces only those namespaces are watched")
	}
}
