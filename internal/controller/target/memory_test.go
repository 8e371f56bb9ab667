package target

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"

	"github.com/nhi-dev/scim-operator/internal/targets"
	"k8s.io/apimachinery/pkg/util/sets"
)

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

	f := targets.NewSweepFlags(nil)
	if !f.Watches("anywhere") {
		t.Error("without --watch-namespaces every namespace is watched")
	}
	f = targets.NewSweepFlags(sets.New("team-a", "scim-operator-system"))
	if f.Watches("team-b") || !f.Watches("team-a") {
		t.Error("with --watch-namespaces only those namespaces are watched")
	}
}
