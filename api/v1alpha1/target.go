package v1alpha1

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// GenericTarget is what a ScimTarget and a ClusterScimTarget share, so that controllers and
// tools handle both through one interface rather than by their Kind.
// +kubebuilder:object:generate=false
type GenericTarget interface {
	metav1.Object
	runtime.Object
	// TargetKind is KindScimTarget or KindClusterScimTarget.
	TargetKind() string
	TargetSpec() *ScimTargetSpec
	TargetStatus() *ScimTargetStatus
	// Namespaces is a ClusterScimTarget's allowedNamespaces; nil for a ScimTarget, which
	// serves its own namespace only.
	Namespaces() *AllowedNamespaces
	// ClusterScoped reports a ClusterScimTarget: its Secrets are read from the operator's
	// cluster-resource namespace, and identities of any namespace may name it.
	ClusterScoped() bool
}

// NewGenericTarget returns an empty target of kind (KindScimTarget or KindClusterScimTarget).
func NewGenericTarget(kind string) (GenericTarget, error) {
	switch kind {
	case KindScimTarget, "":
		return &ScimTarget{}, nil
	case KindClusterScimTarget:
		return &ClusterScimTarget{}, nil
	}
	return nil, fmt.Errorf("%q is not a target kind (ScimTarget or ClusterScimTarget)", kind)
}

var (
	_ GenericTarget = &ScimTarget{}
	_ GenericTarget = &ClusterScimTarget{}
)
