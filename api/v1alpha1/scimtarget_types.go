package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretKeySelector names one key of a Secret. The Secret is always read from a namespace
// the operator chooses (the ScimTarget's own, or the cluster-resource namespace for a
// ClusterScimTarget); a reference never carries a namespace.
type SecretKeySelector struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key inside the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// TargetEvents is how the operator checks the Security Event Tokens a provider pushes (RFC
// 8935): the bearer token it presents, and the issuer and keys of its tokens. The Secrets are
// read where the target's other Secrets are.
type TargetEvents struct {
	// issuer is the iss the provider's tokens carry.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Issuer string `json:"issuer"`
	// jwksSecretRef selects the key holding the provider's JWK Set (JSON), which verifies its
	// tokens.
	JWKSSecretRef SecretKeySelector `json:"jwksSecretRef"`
	// tokenSecretRef selects the key holding the bearer token the provider presents.
	TokenSecretRef SecretKeySelector `json:"tokenSecretRef"`
}

// SecretReference names a whole Secret whose keys are fixed by the field that uses it.
type SecretReference struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// BearerTokenAuth sends `Authorization: Bearer <token>`.
type BearerTokenAuth struct {
	// secretKeyRef selects the key holding the token.
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`
}

// BasicAuth sends HTTP basic credentials read from the keys `username` and `password`.
type BasicAuth struct {
	// secretRef names the Secret with the keys `username` and `password`.
	SecretRef SecretReference `json:"secretRef"`
}

// OAuth2ClientCredentials obtains a token with the OAuth 2.0 client credentials grant.
type OAuth2ClientCredentials struct {
	// tokenURL is the token endpoint.
	// +kubebuilder:validation:Pattern=`^https?://`
	TokenURL string `json:"tokenURL"`
	// clientIDSecretKeyRef selects the key holding the client ID.
	ClientIDSecretKeyRef SecretKeySelector `json:"clientIDSecretKeyRef"`
	// clientSecretSecretKeyRef selects the key holding the client secret.
	ClientSecretSecretKeyRef SecretKeySelector `json:"clientSecretSecretKeyRef"`
	// scopes requested with the token.
	// +optional
	// +listType=atomic
	Scopes []string `json:"scopes,omitempty"`
}

// ClientTLSAuth adds a client certificate (mTLS) to any authentication method.
type ClientTLSAuth struct {
	// clientCertSecretRef names a kubernetes.io/tls Secret (keys `tls.crt` and `tls.key`).
	ClientCertSecretRef SecretReference `json:"clientCertSecretRef"`
}

// Auth says how the operator authenticates to the SCIM endpoint: exactly one of
// bearerToken, basic or oauth2ClientCredentials, optionally with a client certificate.
// +kubebuilder:validation:XValidation:rule="(has(self.bearerToken) ? 1 : 0) + (has(self.basic) ? 1 : 0) + (has(self.oauth2ClientCredentials) ? 1 : 0) == 1",message="auth must set exactly one of bearerToken, basic or oauth2ClientCredentials (tls may be added to any of them)"
type Auth struct {
	// bearerToken authenticates with a static token.
	// +optional
	BearerToken *BearerTokenAuth `json:"bearerToken,omitempty"`
	// basic authenticates with a username and password.
	// +optional
	Basic *BasicAuth `json:"basic,omitempty"`
	// oauth2ClientCredentials authenticates with an OAuth 2.0 access token.
	// +optional
	OAuth2ClientCredentials *OAuth2ClientCredentials `json:"oauth2ClientCredentials,omitempty"`
	// tls adds a client certificate to the connection.
	// +optional
	TLS *ClientTLSAuth `json:"tls,omitempty"`
}

// TLSConfig customises server certificate verification.
type TLSConfig struct {
	// caBundleSecretRef selects a PEM bundle of CAs trusted for the endpoint.
	// +optional
	CABundleSecretRef *SecretKeySelector `json:"caBundleSecretRef,omitempty"`
	// insecureSkipVerify disables server certificate verification. Never use it in
	// production; the operator emits a Warning event while it is set.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// DeletionPolicy says what happens to an account when its identity is deprovisioned.
// +kubebuilder:validation:Enum=Delete;Deactivate;Orphan
type DeletionPolicy string

const (
	// DeletionPolicyDelete deactivates the account, then deletes it.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyDeactivate sets active=false and keeps the account.
	DeletionPolicyDeactivate DeletionPolicy = "Deactivate"
	// DeletionPolicyOrphan leaves the account untouched.
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
)

// RateLimit bounds the request rate to a target.
type RateLimit struct {
	// requestsPerSecond is the sustained rate.
	// +kubebuilder:validation:Minimum=1
	RequestsPerSecond int32 `json:"requestsPerSecond"`
	// burst is the largest number of requests sent at once.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Burst int32 `json:"burst,omitempty"`
}

// PatchMode selects how accounts are updated.
// +kubebuilder:validation:Enum=Auto;Patch;Put
type PatchMode string

const (
	// PatchModeAuto uses PATCH when the ServiceProviderConfig says it is supported, else PUT.
	PatchModeAuto PatchMode = "Auto"
	// PatchModePatch always uses PATCH.
	PatchModePatch PatchMode = "Patch"
	// PatchModePut always uses PUT.
	PatchModePut PatchMode = "Put"
)

// MatchAttribute selects the attribute used to find an existing account before creating one.
// +kubebuilder:validation:Enum=externalId;userName
type MatchAttribute string

const (
	// MatchExternalID matches on externalId, then userName.
	MatchExternalID MatchAttribute = "externalId"
	// MatchUserName matches on userName (case-insensitively).
	MatchUserName MatchAttribute = "userName"
)

// Capabilities are what a SCIM service provider supports, from discovery or an override.
type Capabilities struct {
	// patch: PATCH is supported.
	// +optional
	Patch *bool `json:"patch,omitempty"`
	// filter: list filtering is supported.
	// +optional
	Filter *bool `json:"filter,omitempty"`
	// etag: ETags and If-Match are supported.
	// +optional
	ETag *bool `json:"etag,omitempty"`
	// bulk: bulk operations are supported.
	// +optional
	Bulk *bool `json:"bulk,omitempty"`
	// sort: sorting is supported.
	// +optional
	Sort *bool `json:"sort,omitempty"`
	// maxResults is the largest page the provider returns.
	// +optional
	MaxResults *int32 `json:"maxResults,omitempty"`
	// cursorPaging: lists can be paged with a cursor (RFC 9865, pagination.cursor in the
	// ServiceProviderConfig); sweeps then page by cursor instead of startIndex.
	// +optional
	CursorPaging *bool `json:"cursorPaging,omitempty"`
}

// Compatibility adapts the client to service providers that read the RFC differently.
type Compatibility struct {
	// patchMode selects PATCH or PUT for updates.
	// +kubebuilder:default=Auto
	// +optional
	PatchMode PatchMode `json:"patchMode,omitempty"`
	// matchAttribute is the attribute used to find an existing account.
	// +kubebuilder:default=externalId
	// +optional
	MatchAttribute MatchAttribute `json:"matchAttribute,omitempty"`
	// serviceProviderConfigOverride replaces discovered capabilities field by field.
	// +optional
	ServiceProviderConfigOverride *Capabilities `json:"serviceProviderConfigOverride,omitempty"`
	// revokeByIfMatch says the provider enforces If-Match (RFC 7232) on PATCH: an account on
	// record is then revoked with a PATCH conditional on its recorded ETag and a DELETE (two
	// requests), without looking it up first. Leave it false for a provider that may ignore
	// If-Match: it would deactivate an account reassigned to someone else since the last sync.
	// +optional
	RevokeByIfMatch bool `json:"revokeByIfMatch,omitempty"`
}

// OrphanPolicy says what to do with accounts that carry this cluster's externalId prefix but
// match no ServiceIdentity.
// +kubebuilder:validation:Enum=Ignore;Report;Deactivate;Delete
type OrphanPolicy string

const (
	OrphanPolicyIgnore     OrphanPolicy = "Ignore"
	OrphanPolicyReport     OrphanPolicy = "Report"
	OrphanPolicyDeactivate OrphanPolicy = "Deactivate"
	OrphanPolicyDelete     OrphanPolicy = "Delete"
)

// Orphans configures orphan detection.
type Orphans struct {
	// policy for orphaned accounts: Ignore, Report (status and an Event), Deactivate or Delete.
	// Unset, it depends on the kind (so it has no schema default): Report on a ScimTarget;
	// Deactivate on a ClusterScimTarget, for the orphans of the namespaces it allows (the
	// others are reported), so that an account whose identity went without revocation
	// (finalizer removed by hand, force-orphan, deletionPolicy Orphan) does not stay active on
	// a shared target. Set Report to keep them active. Set explicitly, it applies to every
	// orphan. Each write is made only while a fresh read of the account by id shows it still
	// carrying the orphaned externalId (If-Match where the provider supports ETags).
	// +optional
	Policy OrphanPolicy `json:"policy,omitempty"`
	// interval between orphan scans (at least 30s).
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$') || duration(self) >= duration('30s')",message="orphans.interval must be at least 30s"
	// +optional
	Interval *Duration `json:"interval,omitempty"`
}

// BreakerNamespace is one namespace's share of a circuit breaker's window.
type BreakerNamespace struct {
	// namespace of the identities (or orphaned accounts) whose deletions were charged; empty
	// for the shared share of accounts of no namespace the target serves.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// charged is the number of deletions counted for the namespace in this window.
	// +kubebuilder:validation:Minimum=0
	Charged int32 `json:"charged"`
}

// CircuitBreaker protects a target against mass deletion. Deletions are counted, and every
// write of the orphan clean-up (accounts no identity claims): deactivating an identity's
// account (a revocation, a suspension, an expiry, a withdrawal) is reversible and is never
// held back, and an account whose deletion waits is already inactive.
type CircuitBreaker struct {
	// maxDeletionsPerInterval is the largest number of accounts deleted per interval from one
	// namespace (each namespace has its own share, so a namespace being deleted never pauses
	// another's deletions); beyond it deletions from that namespace pause, with their accounts
	// inactive, and the target reports it.
	// +kubebuilder:validation:Minimum=1
	MaxDeletionsPerInterval int32 `json:"maxDeletionsPerInterval"`
	// interval of the breaker's window (at least 1m).
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$') || duration(self) >= duration('1m')",message="circuitBreaker.interval must be at least 1m"
	// +optional
	Interval *Duration `json:"interval,omitempty"`
}

// ScimTargetSpec is one SCIM 2.0 service provider endpoint. ScimTarget and ClusterScimTarget share it.
// +kubebuilder:validation:XValidation:rule="self.endpoint.startsWith('https://') || (has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="endpoint must use https:// unless allowInsecureHTTP is true (plain http sends credentials in clear text; use it only for local development)"
type ScimTargetSpec struct {
	// endpoint is the SCIM base URL, e.g. https://app.example.com/scim/v2.
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	// +kubebuilder:validation:MaxLength=2048
	Endpoint string `json:"endpoint"`
	// allowInsecureHTTP permits an http:// endpoint (local development only; a Warning event is emitted).
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`
	// auth says how to authenticate.
	Auth Auth `json:"auth"`
	// tls customises certificate verification.
	// +optional
	TLS *TLSConfig `json:"tls,omitempty"`
	// deletionPolicy is the default for identities on this target.
	// +kubebuilder:default=Delete
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// resyncInterval is the drift check period (at least 30s). Annotation
	// scim.nhi.dev/resync-requested-at, set to a new value on an identity, checks it at once.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$') || duration(self) >= duration('30s')",message="resyncInterval must be at least 30s"
	// +optional
	ResyncInterval *Duration `json:"resyncInterval,omitempty"`
	// rateLimit bounds the request rate to this target.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
	// resourceType is what identities are provisioned as on this target. User (the default):
	// a SCIM User at /Users. Agent: the provider's Agent resource type (the IETF SCIM agent
	// drafts, schema urn:ietf:params:scim:schemas:core:2.0:Agent) when its /ResourceTypes
	// advertises one, else a User with userType Agent. Any other name: that resource type as
	// /ResourceTypes advertises it (e.g. ServicePrincipal), with the User attributes; the
	// target is not Ready while the provider does not advertise it. status.resourceType says
	// which is in use. It cannot be changed: the accounts made as one type would be left
	// behind by the other; create another target instead.
	// +kubebuilder:default=User
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9]{0,63}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="resourceType cannot be changed: accounts made as one type would be left behind; create another target"
	// +optional
	ResourceType string `json:"resourceType,omitempty"`
	// compatibility adapts the client to the service provider.
	// +optional
	Compatibility *Compatibility `json:"compatibility,omitempty"`
	// events lets the provider push its SCIM events (RFC 9967) to the operator's Shared
	// Signals endpoint (--ssf-bind-address), at
	// <ssf issuer>/scim-events/namespaces/<namespace>/scimtargets/<name> (or
	// /scim-events/clusterscimtargets/<name>): an account of ours changed, re-activated or
	// deleted there is read and corrected at once, not at the next sweep.
	// +optional
	Events *TargetEvents `json:"events,omitempty"`
	// orphans configures orphan detection.
	// +optional
	Orphans *Orphans `json:"orphans,omitempty"`
	// circuitBreaker protects against mass deletion.
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`
	// adoption says whether an existing account that is not this cluster's (its externalId is
	// not ours) may be taken over when its userName matches an identity's. Never (the
	// default): the identity is Stalled with reason AccountConflict and the account is never
	// written to or deleted. IfNoExternalID: an account with no externalId at all is adopted
	// (its externalId is set to ours); an account with another externalId never is. Named:
	// only the account an identity's spec.adopt names (on a ScimTarget spec.adopt is honoured
	// under Never too; on a ClusterScimTarget, shared with tenants, only under Named or
	// IfNoExternalID). Adoption never re-activates an account, and on a ClusterScimTarget
	// never takes one that belongs to a group the guardrails do not allow.
	// +kubebuilder:default=Never
	// +optional
	Adoption AdoptionPolicy `json:"adoption,omitempty"`
	// mode: Enforce (the default) provisions, corrects and revokes accounts. Observe makes no
	// SCIM write of any kind (no POST, PUT, PATCH or DELETE, no group change, no orphan
	// clean-up): it discovers, sweeps and looks accounts up as usual, and records what it
	// would do on each identity's status.targets[].plan and on status.plan. Deleting an
	// identity (or its workload) on an Observe target records what the revocation would have
	// done (Event WouldDeprovision) and releases the finalizer without a call. Switching to
	// Enforce applies the plan shown, within the circuit breaker; switching back stops every
	// write at once.
	// +kubebuilder:validation:Enum=Observe;Enforce
	// +kubebuilder:default=Enforce
	// +optional
	Mode TargetMode `json:"mode,omitempty"`
	// guardrails limit what identities may claim on this target. Each unset field takes the
	// kind's default: restrictive on a ClusterScimTarget (whose credentials the cluster admin
	// shares with tenants), open on a ScimTarget (which uses its tenant's own credentials).
	// +optional
	Guardrails *Guardrails `json:"guardrails,omitempty"`
	// governance asks the identities using this target for an accountable owner, a bounded
	// lifetime and periodic review.
	// +optional
	Governance *Governance `json:"governance,omitempty"`
}

// Governance is what a target asks of the identities that use it.
type Governance struct {
	// requireOwner refuses to provision identities without spec.owner (reason InvalidSpec).
	// +optional
	RequireOwner bool `json:"requireOwner,omitempty"`
	// ownerDirectory is where owners are looked up, at provisioning and then at every resync.
	// +optional
	OwnerDirectory *OwnerDirectory `json:"ownerDirectory,omitempty"`
	// ownerInactive is what happens when the owner is missing or inactive in the directory.
	// +optional
	OwnerInactive *OwnerInactivePolicy `json:"ownerInactive,omitempty"`
	// maxTTL bounds identities' lifetime from their creation: one without an expiry gets it,
	// a later expiry is capped, and status.expiryCappedBy says so.
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$') || duration(self) >= duration('1m')",message="maxTTL must be at least 1m"
	// +optional
	MaxTTL *Duration `json:"maxTTL,omitempty"`
	// review is the attestation interval of identities that set none, and the longest one an
	// identity may set.
	// +optional
	Review *ReviewPolicy `json:"review,omitempty"`
}

// OwnerDirectory names the target whose accounts are the people who may own identities.
type OwnerDirectory struct {
	// kind of the directory target. A ScimTarget's directory is a ScimTarget in its own
	// namespace; a ClusterScimTarget's is a ClusterScimTarget.
	// +kubebuilder:validation:Enum=ScimTarget;ClusterScimTarget
	// +kubebuilder:default=ScimTarget
	// +optional
	Kind string `json:"kind,omitempty"`
	// name of the directory target.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// attribute matched against spec.owner: emails (emails.value eq) or userName.
	// +kubebuilder:validation:Enum=emails;userName
	// +kubebuilder:default=emails
	// +optional
	Attribute string `json:"attribute,omitempty"`
}

// OwnerInactiveAction is what happens to an identity whose owner is missing or inactive.
// +kubebuilder:validation:Enum=Report;Suspend
type OwnerInactiveAction string

const (
	// OwnerInactiveReport: the identity reports OwnerInactive (Event, metric, status) only.
	OwnerInactiveReport OwnerInactiveAction = "Report"
	// OwnerInactiveSuspend: after the grace, every account is set active=false until a new
	// (active) owner is set.
	OwnerInactiveSuspend OwnerInactiveAction = "Suspend"
)

// OwnerInactivePolicy says what happens when an identity's owner is missing or inactive.
type OwnerInactivePolicy struct {
	// action after the grace.
	// +kubebuilder:default=Report
	// +optional
	Action OwnerInactiveAction `json:"action,omitempty"`
	// grace is how long the owner may stay missing or inactive before the action applies.
	// +kubebuilder:default="72h"
	// +optional
	Grace *Duration `json:"grace,omitempty"`
}

// AdoptionPolicy says which existing accounts an identity may take over.
// +kubebuilder:validation:Enum=Never;Named;IfNoExternalID
type AdoptionPolicy string

const (
	// AdoptionNever never takes over an account whose externalId is not this cluster's id for
	// the identity, but for the one an identity's spec.adopt names on a ScimTarget (whose
	// credentials are the tenant's own).
	AdoptionNever AdoptionPolicy = "Never"
	// AdoptionNamed takes over only the account an identity's spec.adopt names, on either
	// kind: the way a ClusterScimTarget's admin lets `kubectl scim import` manifests adopt.
	AdoptionNamed AdoptionPolicy = "Named"
	// AdoptionIfNoExternalID takes over an account with the identity's userName and no externalId.
	AdoptionIfNoExternalID AdoptionPolicy = "IfNoExternalID"
)

// UserNameScope says which userNames a namespace may claim on a target.
// +kubebuilder:validation:Enum=Namespaced;Any
type UserNameScope string

const (
	// UserNamesNamespaced: the userName must end with ".<namespace>" (the default userName
	// <name>.<namespace> does). Default on a ClusterScimTarget.
	UserNamesNamespaced UserNameScope = "Namespaced"
	// UserNamesAny: any userName. Default on a ScimTarget.
	UserNamesAny UserNameScope = "Any"
)

// Guardrails limit the userNames, groups and attributes identities may claim on a target.
type Guardrails struct {
	// userNames a namespace may claim: Namespaced (the userName is "<label>.<namespace>", the
	// label made of letters, digits, '.', '-' and '_', so never an e-mail address) or Any. Default: Namespaced on a ClusterScimTarget, Any on a ScimTarget.
	// +optional
	UserNames UserNameScope `json:"userNames,omitempty"`
	// groups identities may join, as displayName patterns compared case-insensitively ("*"
	// matches any run of characters, e.g. "payments-*"; "{namespace}" stands for the
	// identity's namespace, e.g. "{namespace}-*" scopes each tenant to its own groups). Unset: none on a ClusterScimTarget,
	// any on a ScimTarget. Set with an empty list: none.
	// +optional
	Groups *AllowList `json:"groups,omitempty"`
	// userTypes identities may set (compared case-insensitively; an identity that sets none
	// sends none). Unset: ServiceAccount and Agent on a ClusterScimTarget, any on a ScimTarget.
	// +optional
	UserTypes *AllowList `json:"userTypes,omitempty"`
	// attributes spec.attributes may set: top-level attribute names ("title"), extension
	// schema URNs (every sub-attribute) or "<urn>:<sub-attribute>", compared
	// case-insensitively; "*" allows any. The sensitive attributes password, roles,
	// entitlements and x509Certificates are refused unless listed by name, "*" does not cover
	// them. Unset: none on a ClusterScimTarget, any but the sensitive ones on a ScimTarget.
	// +optional
	Attributes *AllowList `json:"attributes,omitempty"`
	// deletionPolicies an identity may choose in its spec.deletionPolicy. An identity that
	// chooses another is refused (reason GuardrailViolation) and the target's deletionPolicy
	// applies to its accounts. Unset or empty: Delete and Deactivate on a ClusterScimTarget
	// (an identity's Orphan would leave an account of a shared application active after its
	// identity expired or was deleted), any on a ScimTarget. Whatever is allowed, Orphan never
	// keeps an account active when the identity is suspended (spec.suspend or governance),
	// past a target's maxTTL, or when the target withdrew the namespace: it is deactivated.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	DeletionPolicies []DeletionPolicy `json:"deletionPolicies,omitempty"`
}

// AllowList is a list of permitted names or patterns; empty permits nothing.
type AllowList struct {
	// allowed names or patterns.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=256
	Allowed []string `json:"allowed,omitempty"`
}

// OrphanReport summarises accounts that carry this cluster's prefix but match no identity.
type OrphanReport struct {
	// count of orphaned accounts.
	Count int32 `json:"count"`
	// userNames of the first orphaned accounts.
	// +optional
	// +listType=atomic
	UserNames []string `json:"userNames,omitempty"`
	// lastScanTime is when the target was last scanned for orphans.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	LastScanTime *metav1.Time `json:"lastScanTime,omitempty"`
}

// SweepListing is how a sweep read the target's accounts.
// +kubebuilder:validation:Enum=Filtered;Unfiltered;PerIdentity
type SweepListing string

const (
	// SweepFiltered: one paged list filtered by this cluster's externalId prefix.
	SweepFiltered SweepListing = "Filtered"
	// SweepUnfiltered: the provider refused the prefix filter; every account is listed and
	// this cluster's are picked out.
	SweepUnfiltered SweepListing = "Unfiltered"
	// SweepPerIdentity: the provider cannot list; each identity reads its own account at its
	// resync instead.
	SweepPerIdentity SweepListing = "PerIdentity"
)

// SweepStatus summarises the last sweep of a target.
type SweepStatus struct {
	// lastSweepTime is when the last sweep finished.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	LastSweepTime *metav1.Time `json:"lastSweepTime,omitempty"`
	// listing is how the accounts were read.
	Listing SweepListing `json:"listing"`
	// accounts is the number of this cluster's accounts the sweep saw.
	// +optional
	Accounts int32 `json:"accounts,omitempty"`
	// checked is the number of accounts found to match their identity's spec.
	// +optional
	Checked int32 `json:"checked,omitempty"`
	// flagged is the number of identities handed back to be corrected: their account differed
	// from the spec, was missing, or was not the one on record.
	// +optional
	Flagged int32 `json:"flagged,omitempty"`
	// requests is the number of SCIM requests the sweep made.
	// +optional
	Requests int32 `json:"requests,omitempty"`
	// lastHandledRequest is the value of annotation scim.nhi.dev/sweep-requested-at this
	// sweep acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastHandledRequest string `json:"lastHandledRequest,omitempty"`
	// message says why the target is not swept with one filtered list, when it is not.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// ResourceTypeStatus is the resource type a target's accounts are made as.
type ResourceTypeStatus struct {
	// name of the resource type, e.g. User or Agent.
	// +kubebuilder:validation:MaxLength=64
	Name string `json:"name"`
	// endpoint relative to the target's endpoint, e.g. /Agents.
	// +kubebuilder:validation:MaxLength=128
	Endpoint string `json:"endpoint"`
	// schema is the resource type's core schema URN.
	// +kubebuilder:validation:MaxLength=256
	Schema string `json:"schema"`
	// nameAttribute is the attribute that names an account of this type, read from the
	// provider's /Schemas: agentUserName for an Agent of draft-wzdk-scim-agent-resource, name
	// for one of draft-abbey-scim-agent-extension (also when the provider serves no /Schemas);
	// empty means userName (a User) or, for an Agent recorded before this field, name.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	NameAttribute string `json:"nameAttribute,omitempty"`
	// message says how the choice was made (e.g. why Agent fell back to User).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// Adaptation is one way the operator works around a provider's dialect.
type Adaptation struct {
	// name of the adaptation, e.g. ListWithoutFilter, UpdateWithPut, FilterResultsChecked.
	// +kubebuilder:validation:MaxLength=64
	Name string `json:"name"`
	// message says what the provider does and what the operator does instead.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// ScimTargetStatus is the observed state of a target.
type ScimTargetStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (endpoint reached, auth accepted, discovery parsed).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// capabilities discovered (or overridden).
	// +optional
	Capabilities *Capabilities `json:"capabilities,omitempty"`
	// identities is the number of ServiceIdentities using this target.
	// +optional
	Identities int32 `json:"identities,omitempty"`
	// orphans found on the target.
	// +optional
	Orphans *OrphanReport `json:"orphans,omitempty"`
	// sweep is the last sweep of the target: one paged list of this cluster's accounts, each
	// compared with its identity (drift) or found without one (orphans).
	// +optional
	Sweep *SweepStatus `json:"sweep,omitempty"`
	// adaptations are the ways the operator works around this provider's dialect, decided from
	// discovery, from what the provider answered, or from spec.compatibility.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Adaptations []Adaptation `json:"adaptations,omitempty"`
	// resourceType is the resource type identities are provisioned as here, from
	// spec.resourceType and discovery.
	// +optional
	ResourceType *ResourceTypeStatus `json:"resourceType,omitempty"`
	// lastProbeTime is when discovery last ran.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
	// circuitBreaker is the breaker's current window. It is kept on the API server so that a
	// restart or a failover does not reset it.
	// +optional
	CircuitBreaker *BreakerStatus `json:"circuitBreaker,omitempty"`
	// plan sums up what the operator would do here, while spec.mode is Observe.
	// +optional
	Plan *TargetPlan `json:"plan,omitempty"`
}

// TargetMode says whether the operator writes to a target (Enforce) or only reads it and
// plans (Observe).
type TargetMode string

const (
	// ModeEnforce provisions, corrects and revokes accounts.
	ModeEnforce TargetMode = "Enforce"
	// ModeObserve makes no SCIM write: it reads, sweeps and plans.
	ModeObserve TargetMode = "Observe"
)

// TargetPlan sums up what the operator would do on a target in Observe mode.
type TargetPlan struct {
	// plannedAt is when the plan was last refreshed (at every sweep, and as identities change).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	PlannedAt *metav1.Time `json:"plannedAt,omitempty"`
	// actions counts the identities by the action planned for their account here.
	// +optional
	// +listType=map
	// +listMapKey=action
	// +kubebuilder:validation:MaxItems=16
	Actions []PlanCount `json:"actions,omitempty"`
	// orphans is the number of accounts of this cluster without an identity at the last sweep.
	// +optional
	Orphans int32 `json:"orphans,omitempty"`
	// orphanAction is what the orphan policy would do to them: Report, Deactivate or Delete.
	// +optional
	OrphanAction string `json:"orphanAction,omitempty"`
	// breaker is the circuit breaker's verdict on the planned deactivations and deletions.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Breaker string `json:"breaker,omitempty"`
}

// PlanCount is how many identities have one planned action.
type PlanCount struct {
	// action planned.
	Action PlanAction `json:"action"`
	// count of identities.
	// +kubebuilder:validation:Minimum=0
	Count int32 `json:"count"`
}

// BreakerStatus is one window of the circuit breaker.
type BreakerStatus struct {
	// windowStart is when the current window began.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
	WindowStart metav1.Time `json:"windowStart"`
	// charged is the number of remote deletions counted in this window, all namespaces
	// together. A running operator reserves slots a few at a time; slots it reserved but did
	// not use before a restart stay counted (the breaker errs on the side of pausing).
	// +kubebuilder:validation:Minimum=0
	Charged int32 `json:"charged"`
	// namespaces is what each namespace was charged in this window: the limit applies to each
	// on its own, so one namespace's deletions never pause another's. The entry with an empty
	// namespace (shown as "(other)") is the shared share of the accounts of no namespace the
	// target serves (an orphan naming a namespace that does not exist or that the target does
	// not serve) and of the namespaces beyond the first 511 of a window.
	// +optional
	// +kubebuilder:validation:MaxItems=512
	// +listType=map
	// +listMapKey=namespace
	Namespaces []BreakerNamespace `json:"namespaces,omitempty"`
	// release is the value of annotation scim.nhi.dev/release-breaker this window began with;
	// setting the annotation to a new value starts a new window.
	// +optional
	Release string `json:"release,omitempty"`
}

// ScimTarget is a namespaced SCIM 2.0 service provider. Its secrets are read from its own namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=st;scimt,categories=scim
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Identities",type=integer,JSONPath=`.status.identities`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ScimTarget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ScimTargetSpec   `json:"spec"`
	Status ScimTargetStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ScimTargetList is a list of ScimTargets.
type ScimTargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ScimTarget `json:"items"`
}

func init() {
	register(&ScimTarget{}, &ScimTargetList{})
}

// TargetKind implements GenericTarget.
func (t *ScimTarget) TargetKind() string { return KindScimTarget }

// TargetSpec implements GenericTarget.
func (t *ScimTarget) TargetSpec() *ScimTargetSpec { return &t.Spec }

// TargetStatus implements GenericTarget.
func (t *ScimTarget) TargetStatus() *ScimTargetStatus { return &t.Status }

// Namespaces implements GenericTarget: a ScimTarget serves its own namespace only.
func (t *ScimTarget) Namespaces() *AllowedNamespaces { return nil }

// ClusterScoped implements GenericTarget.
func (t *ScimTarget) ClusterScoped() bool { return false }
