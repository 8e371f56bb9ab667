package v1alpha1

import "k8s.io/apimachinery/pkg/runtime/schema"

// The contract users, GitOps health checks and tools match on: condition types and reasons,
// finalizers and annotations. The controllers use these names; so may anyone else.

// Condition types. Ready, Reconciling and Stalled follow kstatus; Expired is the identity's.
const (
	// ConditionReady is True when the object is what its spec asks: an identity's accounts
	// provisioned (or suspended) on every target, a target reachable with its credentials.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator is working towards Ready (kstatus
	// InProgress).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the operator cannot make progress without a human: a bad
	// spec, a refusal by the target, a guardrail, an open circuit breaker (kstatus Failed).
	ConditionStalled = "Stalled"
	// ConditionExpired is True on an identity past spec.expiresAt or spec.ttl: its accounts
	// are revoked and the identity stays, Ready=False, until deleted or extended.
	ConditionExpired = "Expired"
)

// Condition reasons.
const (
	// ReasonReady: the target answered discovery and authentication; identities may use it.
	ReasonReady = "Ready"
	// ReasonProvisioned: the identity's account exists on every target and matches its spec
	// (or is suspended, active=false, when spec.suspend or a governance policy asks for it).
	ReasonProvisioned = "Provisioned"
	// ReasonProgressing: the operator is creating, updating or checking accounts.
	ReasonProgressing = "Progressing"
	// ReasonTargetNotFound: spec.targetRefs names a ScimTarget or ClusterScimTarget that does
	// not exist (yet); the identity waits for it.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonNamespaceForbidden: a ClusterScimTarget's spec.allowedNamespaces does not admit
	// the identity's namespace.
	ReasonNamespaceForbidden = "NamespaceNotAllowed"
	// ReasonCredentials: the target's credentials Secret (or a key in it) is missing or
	// unusable.
	ReasonCredentials = "CredentialsUnavailable"
	// ReasonUnauthorized: the target answered 401 or 403 to the credentials.
	ReasonUnauthorized = "Unauthorized"
	// ReasonUnreachable: the target did not answer (DNS, connection, TLS, timeout), answered
	// something worth retrying (429, 5xx), or every request slot for it is busy; the operator
	// retries with backoff, honouring Retry-After.
	ReasonUnreachable = "TargetUnreachable"
	// ReasonRejected: the target refused a request for good (a SCIM error not worth retrying:
	// 400 invalidValue, a 409 the lookup could not resolve, 404 on the endpoint); the condition
	// carries the target's SCIM detail and a human has to change the spec or the target.
	ReasonRejected = "RejectedByTarget"
	// ReasonDiscoveryFailed: the target's /ServiceProviderConfig or /Schemas could not be
	// read or understood.
	ReasonDiscoveryFailed = "DiscoveryFailed"
	// ReasonDeprovisioning: the identity is being deleted and its accounts revoked.
	ReasonDeprovisioning = "Deprovisioning"
	// ReasonDeprovisionBlocked: an account of a deleted identity could not be revoked yet
	// (the target is unreachable, refuses, or its circuit breaker is open); the finalizer
	// holds the identity until it is.
	ReasonDeprovisionBlocked = "DeprovisionBlocked"
	// ReasonInvalidSpec: the spec cannot be acted on (e.g. a workloadRef of a kind not
	// supported, an attribute the target's schema lacks); the message says what.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonAccountConflict: an account the identity needs is not provably and uniquely ours
	// (a person's account with the same userName, another externalId, duplicates).
	ReasonAccountConflict = "AccountConflict"
	// ReasonGuardrail: the identity claims a userName, userType, group or attribute the
	// target's spec.guardrails do not allow.
	ReasonGuardrail = "GuardrailViolation"
	// ReasonAddressNotAllowed: a namespaced ScimTarget's endpoint or token URL resolves to an
	// address the operator may not dial for it (see --namespaced-target-allowed-cidrs).
	ReasonAddressNotAllowed = "AddressNotAllowed"
	// ReasonBreakerOpen: deprovisioning paused by spec.circuitBreaker.
	ReasonBreakerOpen = "CircuitBreakerOpen"
	// ReasonExpired marks an identity past spec.expiresAt / spec.ttl.
	ReasonExpired = "Expired"
	// ReasonOwnerDeleted: the workload that owns the identity is gone; its accounts were
	// deprovisioned without waiting for the garbage collector to delete the identity.
	ReasonOwnerDeleted = "OwnerDeleted"
	// ReasonWorkloadNotFound: spec.workloadRef names a workload that does not exist (yet).
	ReasonWorkloadNotFound = "WorkloadNotFound"
	// ReasonOwnerInactive: the owner is missing or inactive in the owner directory; after the
	// grace, a target's policy may suspend the identity until a new owner is set.
	ReasonOwnerInactive = "OwnerInactive"
	// ReasonReviewOverdue: the identity was not attested within its review interval; it is
	// suspended until it is (annotation scim.nhi.dev/reviewed-at).
	ReasonReviewOverdue = "ReviewOverdue"
	// ReasonAccountsLeftActive: an identity's finalizer was released while an account of it
	// is not provably inactive on a target (deletionPolicy Orphan left it as it was). Event only.
	ReasonAccountsLeftActive = "AccountsLeftActive"
	// ReasonObserved: Ready while a target is in Observe mode: the account was looked up and the
	// plan recorded (status.targets[].plan); nothing was written.
	ReasonObserved = "Observed"
	// ReasonInUse: a target being deleted waits for the identities still using it to
	// deprovision their accounts (finalizer scim.nhi.dev/in-use).
	ReasonInUse = "InUse"
	// ReasonExtended: Expired=False again because spec.expiresAt or spec.ttl moved the expiry
	// into the future; the identity is provisioned again.
	ReasonExtended = "Extended"
	// ReasonOwnerActive: the owner directory shows the owner active (condition OwnerActive).
	ReasonOwnerActive = "OwnerActive"
	// ReasonDirectoryUnavailable: the owner directory could not be asked (OwnerActive=Unknown);
	// nothing is suspended for it.
	ReasonDirectoryUnavailable = "DirectoryUnavailable"
	// ReasonSecurityEventGivenUp: a Security Event Token was not accepted by the receiver within
	// the operator's maximum age and is no longer sent. Event only.
	ReasonSecurityEventGivenUp = "SecurityEventGivenUp"
	// ReasonSecurityEventRefused: the receiver refused a Security Event Token for good. Event only.
	ReasonSecurityEventRefused = "SecurityEventRefused"
)

// ConditionOwnerActive is True while the owner directory shows the owner active.
const ConditionOwnerActive = "OwnerActive"

// ReviewedAtAnnotation on an identity records an attestation: the time (RFC 3339, not in the
// future) the owner or an authorised reviewer confirmed it is still needed.
const ReviewedAtAnnotation = "scim.nhi.dev/reviewed-at"

// ReviewedByAnnotation and ReviewedByGroupsAnnotation record who set ReviewedAtAnnotation:
// the user name and the groups (a JSON array of strings) the API server authenticated.
// config/admission's review-attestation MutatingAdmissionPolicy writes them from the request;
// its ValidatingAdmissionPolicy refuses values that are not the requesting user's. The
// operator counts an attestation only when a SubjectAccessReview says that user may `review`
// the identity.
const (
	// ReviewedByAnnotation names the user who attested the review (set by admission).
	ReviewedByAnnotation = "scim.nhi.dev/reviewed-by"
	// ReviewedByGroupsAnnotation holds that user's groups, a JSON array (set by admission).
	ReviewedByGroupsAnnotation = "scim.nhi.dev/reviewed-by-groups"
)

// ReviewVerb is the RBAC verb on serviceidentities (group scim.nhi.dev) that lets a user
// attest an identity's review.
const ReviewVerb = "review"

// RevokedReasonAnnotation records why an identity was suspended as an incident kill switch
// (kubectl scim revoke --reason).
const RevokedReasonAnnotation = "scim.nhi.dev/revoked-reason"

// Annotations on workloads (ServiceAccount, Deployment, StatefulSet, CronJob) that ask for an
// identity.
const (
	// AnnotationTargets on a workload asks for an identity on these targets: comma-separated
	// ScimTarget names of the workload's namespace, or ClusterScimTarget/NAME.
	AnnotationTargets = "scim.nhi.dev/targets"
	// AnnotationGroups on a workload: comma-separated SCIM groups of its account.
	AnnotationGroups = "scim.nhi.dev/groups"
	// AnnotationOwner on a workload: the identity's spec.owner (a person or team).
	AnnotationOwner = "scim.nhi.dev/owner"
	// AnnotationDisplayName on a workload: the account's displayName.
	AnnotationDisplayName = "scim.nhi.dev/display-name"
	// AnnotationTTL on a workload: the identity's spec.ttl (a Go duration, e.g. 24h).
	AnnotationTTL = "scim.nhi.dev/ttl"
)

// BreakerReleaseAnnotation on a target, set to a new value, closes an open circuit breaker.
const BreakerReleaseAnnotation = "scim.nhi.dev/release-breaker"

// SweepRequestedAnnotation on a target, set to a new value (e.g. the current time), sweeps it
// at once: every account of this cluster is listed and compared with its identity, and
// orphans are reported, instead of at the next interval.
const SweepRequestedAnnotation = "scim.nhi.dev/sweep-requested-at"

// WorkloadAtCreationAnnotation on an identity names the workload that owned it when it was
// created ("Kind/name/uid" of its ownerReference of a workload kind), set by config/admission's
// MutatingAdmissionPolicy (or, without it, by the operator with the finalizer, before any
// account is created). The operator records the owner on status.workload with the identity's
// first status; until that write lands, this annotation is the owner on record, so that an
// owner deleted with orphan propagation while the operator was down (the garbage collector
// then removes the ownerReference) still retires the identity. It is not read once the
// identity has a status.
const WorkloadAtCreationAnnotation = "scim.nhi.dev/workload-at-creation"

// TargetsAtCreationAnnotation on an identity names the targets its spec referenced when it was
// created ("Kind/name", comma-separated), set with WorkloadAtCreationAnnotation and read, like
// it, only until the identity's first status is written: a new identity's account on a
// namespace's own ScimTarget is created before anything is written on status, and a targetRef
// removed while the operator was down right after that POST is still looked up by externalId
// and deprovisioned. (A ClusterScimTarget is recorded on status before its first call.)
const TargetsAtCreationAnnotation = "scim.nhi.dev/targets-at-creation"

// WorkloadKinds are the kinds whose annotations ask for an identity, and the kinds
// spec.workloadRef may name.
var WorkloadKinds = []schema.GroupVersionKind{
	{Group: "", Version: "v1", Kind: "ServiceAccount"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "batch", Version: "v1", Kind: "CronJob"},
}
