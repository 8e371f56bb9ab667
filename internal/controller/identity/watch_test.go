package identity

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// A namespace outside --watch-namespaces is not looked up in the cache (which has nothing of
// it and would log an error at every label change); no flag watches every namespace.
func TestIdentitiesInUnwatchedNamespace(t *testing.T) {
	r := &Reconciler{Watched: sets.New("team-a", "ops")}
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}
	if reqs := r.identitiesInNamespace(t.Context(), other); reqs != nil { // r has no client: a lookup would panic
		t.Fatalf("requests for an unwatched namespace: %v", reqs)
	}
}
