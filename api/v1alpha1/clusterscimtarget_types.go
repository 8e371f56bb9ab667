package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AllowedNamespaces restricts which namespaces' identities may use a ClusterScimTarget.
// Unset or empty allows no namespace; `selector: {}` allows every namespace.
type AllowedNamespaces struct {
	// names of namespaces allowed.
	// +optional
	// +listType=set
	Names []string `json:"names,omitempty"`
	// selector matches namespaces by label.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// The ScimTargetSpec's rules (https:// endpoint) apply through the embedding: repeating one on
// ClusterScimTargetSpec would list it twice in the CRD, which server-side apply (kubectl apply
// --server-side, Flux, Argo CD with ServerSideApply) refuses.

// ClusterScimTargetSpec is a ScimTargetSpec plus namespace tenancy.
type ClusterScimTargetSpec struct {
	ScimTargetSpec `json:",inline"`
	// allowedNamespaces lists the namespaces whose identities may use this target. Unset:
	// none. Removing a namespace deprovisions its accounts (within the circuit breaker).
	// +optional
	AllowedNamespaces *AllowedNamespaces `json:"allowedNamespaces,omitempty"`
}

// ClusterScimTarget is a cluster-wide SCIM 2.0 service provider. Its secrets are read from the
// operator's cluster-resource namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cst;cscimt,categories=scim
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Identities",type=integer,JSONPath=`.status.identities`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterScimTarget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterScimTargetSpec `json:"spec"`
	Status ScimTargetStatus      `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterScimTargetList is a list of ClusterScimTargets.
type ClusterScimTargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterScimTarget `json:"items"`
}

func init() {
	register(&ClusterScimTarget{}, &ClusterScimTargetList{})
}

// TargetKind implements GenericTarget.
func (t *ClusterScimTarget) TargetKind() string { return KindClusterScimTarget }

// TargetSpec implements GenericTarget.
func (t *ClusterScimTarget) TargetSpec() *ScimTargetSpec { return &t.Spec.ScimTargetSpec }

// TargetStatus implements GenericTarget.
func (t *ClusterScimTarget) TargetStatus() *ScimTargetStatus { return &t.Status }

// Namespaces implements GenericTarget: the namespaces allowed (nil or empty: none).
func (t *ClusterScimTarget) Namespaces() *AllowedNamespaces { return t.Spec.AllowedNamespaces }

// ClusterScoped implements GenericTarget.
func (t *ClusterScimTarget) ClusterScoped() bool { return true }
