package targets

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

func TestStamped(t *testing.T) {
	stamped := func(v string, mutate ...func(*scimv1.ServiceIdentity)) []scimv1.TargetReference {
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{scimv1.TargetsAtCreationAnnotation: v}}}
		for _, m := range mutate {
			m(si)
		}
		return Stamped(si)
	}
	refs := []scimv1.TargetReference{{Kind: scimv1.KindScimTarget, Name: "app"}, {Kind: scimv1.KindClusterScimTarget, Name: "corp"}}
	if got := stamped(Stamp(refs)); fmt.Sprint(got) != fmt.Sprint(refs) {
		t.Errorf("round trip: got %v, want %v", got, refs)
	}
	if got := stamped("ScimTarget/app,ScimTarget/app, ScimTarget/app"); fmt.Sprint(got) != fmt.Sprint(refs[:1]) {
		t.Errorf("duplicates are dropped: got %v", got)
	}
	// A part that names no target a spec can reference (a targetRef name with a comma splits
	// into parts of its choosing) discredits the whole stamp.
	for _, bad := range []string{"ScimTarget/Bad_Name", "Secret/x", "ScimTarget/a/b", "ScimTarget/", "app"} {
		if got := stamped("ScimTarget/app," + bad); got != nil {
			t.Errorf("a stamp with %q: got %v, want none", bad, got)
		}
	}
	many := make([]string, MaxStampedTargets+1)
	for i := range many {
		many[i] = fmt.Sprintf("ScimTarget/t%d", i)
	}
	if got := stamped(strings.Join(many, ",")); got != nil {
		t.Errorf("more than %d targets: got %d, want none", MaxStampedTargets, len(got))
	}
	if got := stamped(Stamp(refs), func(si *scimv1.ServiceIdentity) {
		si.Status.Conditions = []metav1.Condition{{Type: scimv1.ConditionReady}}
	}); got != nil {
		t.Errorf("read once the identity has a status: got %v", got)
	}
}
