package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// KindScimTarget is the kind of a namespaced target.
	KindScimTarget = "ScimTarget"
	// KindClusterScimTarget is the kind of a cluster-scoped target.
	KindClusterScimTarget = "ClusterScimTarget"

	// DeprovisionFinalizer holds a ServiceIdentity until every target confirmed its account is gone.
	DeprovisionFinalizer = "scim.nhi.dev/deprovision"
	// InUseFinalizer holds a target while identities use it, so it (and a snapshot of its
	// credentials in the operator's namespace) stays usable until the last account is
	// deprovisioned. The operator puts no finalizer on tenants' Secrets.
	InUseFinalizer = "scim.nhi.dev/in-use"
	// SecurityEventsFinalizer holds a ServiceIdentity, when security events are configured,
	// while a Security Event Token recorded on its status is not delivered (its status is the
	// outbox), or until the operator gives it up (--security-events-max-age). It never holds
	// back a revocation: the accounts are revoked and DeprovisionFinalizer released first.
	SecurityEventsFinalizer = "scim.nhi.dev/security-events"
	// ForceOrphanAnnotation set to "true" releases the finalizer without touching the targets.
	ForceOrphanAnnotation = "scim.nhi.dev/force-orphan"
	// ResyncRequestedAnnotation set to a new value (e.g. the current time) on an identity
	// checks its accounts against the targets at once instead of at the next resyncInterval.
	ResyncRequestedAnnotation = "scim.nhi.dev/resync-requested-at"
)

// TargetReference names a ScimTarget (same namespace) or a ClusterScimTarget.
type TargetReference struct {
	// kind of the target.
	// +kubebuilder:validation:Enum=ScimTarget;ClusterScimTarget
	// +kubebuilder:default=ScimTarget
	// +optional
	Kind string `json:"kind,omitempty"`
	// name of the target.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// WorkloadReference names a workload in the identity's namespace whose lifetime the identity shares.
// +kubebuilder:validation:XValidation:rule="(self.apiVersion == 'v1' && self.kind == 'ServiceAccount') || (self.apiVersion == 'apps/v1' && (self.kind == 'Deployment' || self.kind == 'StatefulSet')) || (self.apiVersion == 'batch/v1' && self.kind == 'CronJob')",message="workloadRef names a workload kind the operator retires identities with: v1 ServiceAccount, apps/v1 Deployment or StatefulSet, batch/v1 CronJob"
type WorkloadReference struct {
	// apiVersion of the workload, e.g. apps/v1.
	// +kubebuilder:validation:MinLength=1
	APIVersion string `json:"apiVersion"`
	// kind of the workload, e.g. Deployment.
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`
	// name of the workload.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// ServiceIdentitySpec declares one non-human identity.
// +kubebuilder:validation:XValidation:rule="has(oldSelf.userName) == has(self.userName) && (!has(self.userName) || self.userName == oldSelf.userName)",message="userName is immutable: delete and recreate the ServiceIdentity to change it"
// +kubebuilder:validation:XValidation:rule="!(has(self.ttl) && has(self.expiresAt))",message="set either ttl or expiresAt, not both"
type ServiceIdentitySpec struct {
	// targetRefs lists the targets on which the identity has an account.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	TargetRefs []TargetReference `json:"targetRefs"`
	// userName of the account. Defaults to <metadata.name>.<metadata.namespace>. Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	UserName string `json:"userName,omitempty"`
	// displayName of the account.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DisplayName string `json:"displayName,omitempty"`
	// userType of the account: ServiceAccount, or Agent for AI agents.
	// +kubebuilder:default=ServiceAccount
	// +kubebuilder:validation:MaxLength=64
	// +optional
	UserType string `json:"userType,omitempty"`
	// owner is the accountable human's e-mail address.
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+$`
	// +kubebuilder:validation:MaxLength=254
	// +optional
	Owner string `json:"owner,omitempty"`
	// groups (displayNames) the account is a member of.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Groups []string `json:"groups,omitempty"`
	// attributes is free-form JSON merged into the SCIM User, e.g. the enterprise extension.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Attributes *apiextensionsv1.JSON `json:"attributes,omitempty"`
	// suspend sets active=false on every target at once (incident kill switch).
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// adopt names one existing account (not this cluster's: no externalId) that the identity
	// may take over, as `kubectl scim import` writes it: the operator adopts exactly that
	// account, only while it still has this id, this userName and no externalId, stamps this
	// cluster's externalId on it, and never adopts anything else. On a ClusterScimTarget it is
	// honoured only when the target's spec.adoption is Named (or IfNoExternalID), within its
	// guardrails. An inactive account is adopted only with spec.suspend set (adoption never
	// re-activates one).
	// +optional
	Adopt *AdoptAccount `json:"adopt,omitempty"`
	// expiresAt deprovisions the identity at this time (RFC 3339, e.g. 2030-01-01T00:00:00Z).
	// +optional
	ExpiresAt *Timestamp `json:"expiresAt,omitempty"`
	// ttl deprovisions the identity this long after its creation (a Go duration, e.g. 720h).
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$') || duration(self) > duration('0s')",message="ttl must be a positive duration, e.g. 720h"
	// +optional
	TTL *Duration `json:"ttl,omitempty"`
	// deletionPolicy overrides the target's.
	// +optional
	DeletionPolicy *DeletionPolicy `json:"deletionPolicy,omitempty"`
	// workloadRef names a workload in the same namespace whose deletion deletes this identity.
	// +optional
	WorkloadRef *WorkloadReference `json:"workloadRef,omitempty"`
	// review asks for a periodic attestation that the identity is still needed: a reviewer (a
	// user with the `review` verb on serviceidentities) sets annotation
	// scim.nhi.dev/reviewed-at (RFC 3339); see config/admission/review-attestation-policy.yaml
	// for how who set it is recorded. An identity
	// not attested within every of its last review (or of its creation) is suspended with
	// reason ReviewOverdue until it is. A target's spec.governance.review applies when this is
	// unset, and caps it when shorter.
	// +optional
	Review *ReviewPolicy `json:"review,omitempty"`
}

// ReviewPolicy is how often an identity must be attested.
type ReviewPolicy struct {
	// every is the longest time between two attestations (a Go duration, e.g. 2160h for 90 days).
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$') || duration(self) >= duration('1h')",message="review.every must be at least 1h"
	Every Duration `json:"every"`
}

// OwnerState is what the owner directory says of an identity's owner.
// +kubebuilder:validation:Enum=Active;Inactive;Missing;Unchecked
type OwnerState string

const (
	// OwnerActive: the directory has an active account for the owner.
	OwnerActive OwnerState = "Active"
	// OwnerInactive: the directory's account for the owner is inactive (the person left).
	OwnerInactive OwnerState = "Inactive"
	// OwnerMissing: no spec.owner, or the directory has no account for it.
	OwnerMissing OwnerState = "Missing"
	// OwnerUnchecked: the directory could not be asked; message says why.
	OwnerUnchecked OwnerState = "Unchecked"
)

// OwnerStatus is the last check of the identity's owner against the owner directory.
type OwnerStatus struct {
	// state of the owner.
	State OwnerState `json:"state"`
	// owner is the spec.owner value the state is about: an answer about another owner value
	// never stands for this one.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Owner string `json:"owner,omitempty"`
	// directory is the target looked up (kind/namespace/name).
	// +optional
	Directory string `json:"directory,omitempty"`
	// checkedAt is when the directory last answered.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	CheckedAt *metav1.Time `json:"checkedAt,omitempty"`
	// since is when the owner was first found missing or inactive; the grace runs from here.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	Since *metav1.Time `json:"since,omitempty"`
	// message explains the state and what the policy does.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
	// accounts are the owner's active accounts in those directories that are also targets of
	// this identity: an Agent there names its owner in owners (draft-wzdk-scim-agent-resource).
	// +optional
	// +listType=map
	// +listMapKey=directory
	// +kubebuilder:validation:MaxItems=8
	Accounts []OwnerAccount `json:"accounts,omitempty"`
}

// OwnerAccount is the owner's account in one owner directory.
type OwnerAccount struct {
	// directory is the target looked up (kind/namespace/name).
	// +kubebuilder:validation:MaxLength=256
	Directory string `json:"directory"`
	// id is the owner's account id there.
	// +kubebuilder:validation:MaxLength=256
	ID string `json:"id"`
}

// ReviewStatus is the identity's attestation record.
type ReviewStatus struct {
	// every is the review interval in effect (the shortest of spec.review and the targets').
	Every Duration `json:"every"`
	// lastReviewedAt is the last valid attestation (annotation scim.nhi.dev/reviewed-at).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	LastReviewedAt *metav1.Time `json:"lastReviewedAt,omitempty"`
	// nextReviewAt is when the identity is suspended unless attested again.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	NextReviewAt metav1.Time `json:"nextReviewAt"`
	// reviewedBy is the user who made the attestation of lastReviewedAt (annotation
	// scim.nhi.dev/reviewed-by), checked to hold the `review` verb on this identity.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ReviewedBy string `json:"reviewedBy,omitempty"`
	// message says why an attestation was not taken (in the future, not RFC 3339, not made by
	// a user who may review the identity).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// RevocationResult is what a target confirmed when the account was read back after deprovisioning.
// +kubebuilder:validation:Enum=NotFound;Inactive;Orphaned
type RevocationResult string

const (
	// RevocationNotFound: the target answered 404: the account is gone.
	RevocationNotFound RevocationResult = "NotFound"
	// RevocationInactive: the target shows the account with active false.
	RevocationInactive RevocationResult = "Inactive"
	// RevocationOrphaned: deletionPolicy Orphan left the account as it was; nothing to confirm.
	RevocationOrphaned RevocationResult = "Orphaned"
)

// RevocationEvidence is what a target confirmed after the account was deprovisioned.
type RevocationEvidence struct {
	// result the target confirmed.
	Result RevocationResult `json:"result"`
	// confirmedAt is when the target confirmed it.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	ConfirmedAt metav1.Time `json:"confirmedAt"`
	// securityEvent is the jti of the Security Event Token sent for it, when one was.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	SecurityEvent string `json:"securityEvent,omitempty"`
	// securityEventSubject is that token's subject (sub_id uri: the account's SCIM location),
	// kept with the jti so the same token can be sent again until the receiver accepts it.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	SecurityEventSubject string `json:"securityEventSubject,omitempty"`
	// securityEventDelivery is where that token is: Pending (recorded, not accepted yet: it is
	// sent, and after a restart sent again with the same jti), Delivered, Refused (the receiver
	// will never accept it) or GivenUp (not accepted within --security-events-max-age).
	// +optional
	SecurityEventDelivery SecurityEventDelivery `json:"securityEventDelivery,omitempty"`
	// securityEventDeliveredAt is when the receiver accepted that token.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	SecurityEventDeliveredAt *metav1.Time `json:"securityEventDeliveredAt,omitempty"`
	// streams is where the token of this revocation is for each SecurityEventStream that
	// records it: written before the token is offered to the stream, so a restart or a leader
	// change neither loses it nor offers it again once acknowledged.
	// +optional
	// +listType=map
	// +listMapKey=stream
	// +listMapKey=event
	// +kubebuilder:validation:MaxItems=16
	Streams []StreamEvent `json:"streams,omitempty"`
}

// SecurityEventDelivery is where the Security Event Token of a revocation is.
// +kubebuilder:validation:Enum=Pending;Delivered;Refused;GivenUp
type SecurityEventDelivery string

const (
	// SecurityEventPending: recorded on the identity, not accepted by the receiver yet.
	SecurityEventPending SecurityEventDelivery = "Pending"
	// SecurityEventDelivered: the receiver accepted it.
	SecurityEventDelivered SecurityEventDelivery = "Delivered"
	// SecurityEventRefused: the receiver answered that it will never accept it.
	SecurityEventRefused SecurityEventDelivery = "Refused"
	// SecurityEventGivenUp: not accepted within the operator's maximum age; no longer sent.
	SecurityEventGivenUp SecurityEventDelivery = "GivenUp"
)

// SecurityEventUndelivered reports whether the evidence holds a token still to be delivered.
func (e *RevocationEvidence) SecurityEventUndelivered() bool {
	return e != nil && e.SecurityEvent != "" && e.SecurityEventSubject != "" && e.SecurityEventDelivery == SecurityEventPending
}

// TargetState is the state of an identity's account on one target.
type TargetState string

const (
	// TargetStatePending: not provisioned yet.
	TargetStatePending TargetState = "Pending"
	// TargetStateProvisioned: the account exists and matches the spec.
	TargetStateProvisioned TargetState = "Provisioned"
	// TargetStateSuspended: the account exists and is inactive because the identity is suspended.
	TargetStateSuspended TargetState = "Suspended"
	// TargetStateError: the last attempt failed; message says why.
	TargetStateError TargetState = "Error"
	// TargetStateDeprovisioning: deletion in progress.
	TargetStateDeprovisioning TargetState = "Deprovisioning"
	// TargetStateDeprovisioned: the account is gone (or deactivated/orphaned per policy).
	TargetStateDeprovisioned TargetState = "Deprovisioned"
)

// IdentityTargetStatus is the account of an identity on one target.
type IdentityTargetStatus struct {
	// kind of the target.
	Kind string `json:"kind"`
	// name of the target.
	Name string `json:"name"`
	// id is the SCIM id the target assigned to the account.
	// +optional
	ID string `json:"id,omitempty"`
	// userName of the account.
	// +optional
	UserName string `json:"userName,omitempty"`
	// active as last read from the target.
	// +optional
	Active *bool `json:"active,omitempty"`
	// version is the account's ETag as last read from the target.
	// +optional
	Version string `json:"version,omitempty"`
	// groups are the displayNames of the groups the operator made the account a member of.
	// +optional
	// +listType=atomic
	Groups []string `json:"groups,omitempty"`
	// lastSyncTime is when the account was last confirmed to match the spec.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// revocation is what the target confirmed when the account was read back after it was
	// deprovisioned.
	// +optional
	Revocation *RevocationEvidence `json:"revocation,omitempty"`
	// state of the account.
	// +optional
	State TargetState `json:"state,omitempty"`
	// message explains the state.
	// +optional
	Message string `json:"message,omitempty"`
	// plan is what the operator would do to the account, while the target is in Observe mode.
	// +optional
	Plan *AccountPlan `json:"plan,omitempty"`
}

// AdoptAccount names the exact account an identity may take over.
type AdoptAccount struct {
	// id of the account on the target.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	ID string `json:"id"`
	// userName the account had when it was imported; it must still have it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	UserName string `json:"userName"`
	// target the account is on, when the identity has several targets: Kind/name (e.g.
	// ClusterScimTarget/corp) or the name of a ScimTarget. Empty: the first target.
	// +optional
	// +kubebuilder:validation:MaxLength=320
	Target string `json:"target,omitempty"`
}

// PlanAction is what the operator would do to an identity's account on an Observe target.
// +kubebuilder:validation:Enum=None;Create;Adopt;Update;Deactivate;Delete;Conflict
type PlanAction string

const (
	// PlanNone: the account matches the spec.
	PlanNone PlanAction = "None"
	// PlanCreate: no account carries the identity's externalId; one would be created.
	PlanCreate PlanAction = "Create"
	// PlanAdopt: an existing account would be taken over (spec.adopt or spec.adoption).
	PlanAdopt PlanAction = "Adopt"
	// PlanUpdate: the account differs from the spec (attributes, active, groups).
	PlanUpdate PlanAction = "Update"
	// PlanDeactivate: the account would be set active=false (suspend, expiry, policy).
	PlanDeactivate PlanAction = "Deactivate"
	// PlanDelete: the account would be deactivated, then deleted.
	PlanDelete PlanAction = "Delete"
	// PlanConflict: the operator would not touch the account; reason says why.
	PlanConflict PlanAction = "Conflict"
)

// AccountPlan is what the operator would do to one account in Observe mode.
type AccountPlan struct {
	// action planned.
	Action PlanAction `json:"action"`
	// changes are the attributes that would change: path, current and desired value (JSON,
	// truncated).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Changes []AttributeChange `json:"changes,omitempty"`
	// groupsAdded are the groups the account would join.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	GroupsAdded []string `json:"groupsAdded,omitempty"`
	// groupsRemoved are the groups the account would leave.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	GroupsRemoved []string `json:"groupsRemoved,omitempty"`
	// reason says why (the cause of a deactivation, what a conflict is).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Reason string `json:"reason,omitempty"`
	// plannedAt is when the plan was made.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	PlannedAt *metav1.Time `json:"plannedAt,omitempty"`
}

// AttributeChange is one attribute that would change.
type AttributeChange struct {
	// path of the attribute (e.g. displayName, active, urn:...:enterprise:2.0:User:department).
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path"`
	// current value on the target, as JSON (absent: the attribute is not set).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Current string `json:"current,omitempty"`
	// desired value, as JSON (absent: it would be removed).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Desired string `json:"desired,omitempty"`
}

// WorkloadOwner names the workload that owns an identity, UID included.
type WorkloadOwner struct {
	// apiVersion of the workload.
	APIVersion string `json:"apiVersion"`
	// kind of the workload.
	Kind string `json:"kind"`
	// name of the workload.
	Name string `json:"name"`
	// uid of the workload: a new object of the same name is not the owner.
	UID types.UID `json:"uid"`
}

// ServiceIdentityStatus is the observed state of an identity.
type ServiceIdentityStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready, Reconciling, Stalled, Expired.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// userName is the effective userName (spec.userName or its default).
	// +optional
	UserName string `json:"userName,omitempty"`
	// targets holds one entry per target the identity has (or had) an account on.
	// +optional
	// +listType=atomic
	Targets []IdentityTargetStatus `json:"targets,omitempty"`
	// expiresAt is when the identity expires, from spec.expiresAt or spec.ttl.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// workload is the workload that owned the identity when it was provisioned. Whether it
	// still exists is decided from this record (and the ownerReference) on every reconcile, so
	// a workload deleted while the operator was down, or orphan propagation removing the
	// ownerReference, still revokes the accounts.
	// +optional
	Workload *WorkloadOwner `json:"workload,omitempty"`
	// expiryCappedBy names the target whose spec.governance.maxTTL set (or shortened) expiresAt.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	ExpiryCappedBy string `json:"expiryCappedBy,omitempty"`
	// owner is the last check of spec.owner against the targets' owner directory.
	// +optional
	Owner *OwnerStatus `json:"owner,omitempty"`
	// review is the attestation record, when a review interval applies.
	// +optional
	Review *ReviewStatus `json:"review,omitempty"`
	// deprovisionedAt is when every account was deprovisioned.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	DeprovisionedAt *metav1.Time `json:"deprovisionedAt,omitempty"`
}

// ServiceIdentity is one non-human identity, provisioned as a SCIM User on one or more targets.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=si;sid,categories=scim
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.spec.targetRefs[*].name`
// +kubebuilder:printcolumn:name="Username",type=string,JSONPath=`.status.userName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Expires",type=string,format=date-time,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Review Due",type=string,format=date-time,JSONPath=`.status.review.nextReviewAt`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceIdentity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceIdentitySpec   `json:"spec"`
	Status ServiceIdentityStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ServiceIdentityList is a list of ServiceIdentities.
type ServiceIdentityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceIdentity `json:"items"`
}

func init() {
	register(&ServiceIdentity{}, &ServiceIdentityList{})
}

// EffectiveUserName is spec.userName, or <name>.<namespace> when unset.
func (s *ServiceIdentity) EffectiveUserName() string {
	if s.Spec.UserName != "" {
		return s.Spec.UserName
	}
	return s.Name + "." + s.Namespace
}

// TargetKind returns the reference's kind with the default applied.
func (r TargetReference) TargetKind() string {
	if r.Kind == "" {
		return KindScimTarget
	}
	return r.Kind
}

// ClusterScoped reports whether the reference names a ClusterScimTarget, which serves many
// namespaces; a ScimTarget serves its own.
func (r TargetReference) ClusterScoped() bool { return r.TargetKind() == KindClusterScimTarget }

// StreamUndelivered reports whether the evidence holds a token still to be delivered to a
// SecurityEventStream.
func (e *RevocationEvidence) StreamUndelivered() bool {
	if e == nil {
		return false
	}
	for i := range e.Streams {
		if e.Streams[i].Delivery == SecurityEventPending {
			return true
		}
	}
	return false
}

// HoldsSecurityEvents reports whether a token on si's status is still to be delivered, to the
// receiver of the --security-events-* flags or to a SecurityEventStream: the identity keeps
// SecurityEventsFinalizer until none is.
func (si *ServiceIdentity) HoldsSecurityEvents() bool {
	for i := range si.Status.Targets {
		if ev := si.Status.Targets[i].Revocation; ev.SecurityEventUndelivered() || ev.StreamUndelivered() {
			return true
		}
	}
	return false
}
