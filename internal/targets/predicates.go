package targets

import (
	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/status"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// Changed passes target creations, deletions, spec changes and Ready flips,
// not every status write (probe times), so identities are not woken for nothing.
type Changed struct{ predicate.Funcs }

// Update implements predicate.Predicate.
func (Changed) Update(e event.UpdateEvent) bool {
	if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
		e.ObjectOld.GetAnnotations()[scimv1.BreakerReleaseAnnotation] != e.ObjectNew.GetAnnotations()[scimv1.BreakerReleaseAnnotation] {
		return true
	}
	return readyStatus(e.ObjectOld) != readyStatus(e.ObjectNew)
}

func readyStatus(o client.Object) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(status.Of(o), scimv1.ConditionReady); c != nil {
		return c.Status
	}
	return metav1.ConditionUnknown
}
