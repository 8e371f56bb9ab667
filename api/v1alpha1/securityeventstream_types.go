package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StreamDeliveryMethod is how a stream's Security Event Tokens reach its receiver.
// +kubebuilder:validation:Enum=Poll;Push
type StreamDeliveryMethod string

const (
	// StreamPoll: the receiver polls the transmitter's poll endpoint (RFC 8936) and acknowledges
	// each token by its jti; urn:ietf:rfc:8936 in the SSF API.
	StreamPoll StreamDeliveryMethod = "Poll"
	// StreamPush: the operator POSTs each token to the receiver's endpoint (RFC 8935);
	// urn:ietf:rfc:8935 in the SSF API.
	StreamPush StreamDeliveryMethod = "Push"
)

// StreamState is a stream's status in the Shared Signals Framework's words.
// +kubebuilder:validation:Enum=enabled;paused;disabled
type StreamState string

const (
	// StreamEnabled: events are recorded for the stream and delivered.
	StreamEnabled StreamState = "enabled"
	// StreamPaused: events are recorded (held) but not delivered until the stream is enabled.
	StreamPaused StreamState = "paused"
	// StreamDisabled: events are neither recorded nor delivered.
	StreamDisabled StreamState = "disabled"
)

// StreamDeliverySpec is a stream's delivery (the SSF stream configuration's "delivery").
// +kubebuilder:validation:XValidation:rule="self.method == 'Push' ? has(self.endpointURL) : !has(self.endpointURL)",message="endpointURL is required for Push delivery and not allowed for Poll (the transmitter serves the poll endpoint)"
// +kubebuilder:validation:XValidation:rule="self.method == 'Push' || !has(self.authorizationSecretRef)",message="authorizationSecretRef is only for Push delivery"
type StreamDeliverySpec struct {
	// method is Poll (the receiver fetches) or Push (the operator sends).
	Method StreamDeliveryMethod `json:"method"`
	// endpointURL is where Push delivery POSTs tokens: https (plain http only to a loopback
	// address).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="endpointURL must be an http(s) URL"
	EndpointURL string `json:"endpointURL,omitempty"`
	// authorizationSecretRef selects a key, in the stream's namespace, whose value Push delivery
	// sends as the Authorization header (the SSF "authorization_header").
	// +optional
	AuthorizationSecretRef *SecretKeySelector `json:"authorizationSecretRef,omitempty"`
}

// SecurityEventStreamSpec is a Shared Signals Framework stream: what its receiver asked for.
// A stream carries the events of its own namespace; a stream in the operator's namespace
// carries every namespace's.
type SecurityEventStreamSpec struct {
	// audience is the receiver: the aud claim of every token of the stream.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	Audience []string `json:"audience"`
	// delivery is how tokens reach the receiver.
	Delivery StreamDeliverySpec `json:"delivery"`
	// eventsRequested are the event type URIs the receiver wants; what the transmitter
	// supports of them is status.eventsDelivered.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	EventsRequested []string `json:"eventsRequested,omitempty"`
	// description is the receiver's, for people.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Description string `json:"description,omitempty"`
	// state is the stream's SSF status: enabled, paused (events held), disabled (events
	// dropped). The receiver changes it through the SSF status endpoint.
	// +optional
	// +kubebuilder:default=enabled
	State StreamState `json:"state,omitempty"`
	// stateReason is why the state was last changed, as its author gave it.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	StateReason string `json:"stateReason,omitempty"`
}

// StreamVerification is a verification event the receiver asked for, waiting to be delivered.
type StreamVerification struct {
	// jti of the verification token.
	// +kubebuilder:validation:MaxLength=64
	JTI string `json:"jti"`
	// state is the opaque value the receiver sent, returned in the event.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	State string `json:"state,omitempty"`
	// requestedAt is when the receiver asked.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	RequestedAt metav1.Time `json:"requestedAt"`
}

// SecurityEventStreamStatus is what the transmitter did with the stream.
type SecurityEventStreamStatus struct {
	// conditions: Ready (events are recorded for the stream) with its reason.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// eventsDelivered are the requested event types the transmitter sends.
	// +optional
	// +listType=atomic
	EventsDelivered []string `json:"eventsDelivered,omitempty"`
	// pending is how many tokens are recorded for the stream and not delivered yet.
	// +optional
	Pending int32 `json:"pending"`
	// delivered is how many tokens the receiver accepted (push) or acknowledged (poll), as of
	// the identities' status.
	// +optional
	Delivered int32 `json:"delivered"`
	// lastDeliveredAt is when the receiver last accepted or acknowledged a token.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	LastDeliveredAt *metav1.Time `json:"lastDeliveredAt,omitempty"`
	// lastError is the last delivery failure, for push (the receiver's answer, bounded).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LastError string `json:"lastError,omitempty"`
	// verification is the verification event waiting for the receiver, if any.
	// +optional
	Verification *StreamVerification `json:"verification,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ses,categories=scim
// +kubebuilder:printcolumn:name="Delivery",type=string,JSONPath=`.spec.delivery.method`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pending`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.delivered`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// SecurityEventStream is a Shared Signals Framework stream of the operator's transmitter:
// declared in YAML, or created by a receiver through the SSF API.
type SecurityEventStream struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SecurityEventStreamSpec   `json:"spec"`
	Status SecurityEventStreamStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SecurityEventStreamList is a list of SecurityEventStreams.
type SecurityEventStreamList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecurityEventStream `json:"items"`
}

func init() {
	register(&SecurityEventStream{}, &SecurityEventStreamList{})
}

// StreamEvent is where one revocation's token of one event type is for one stream: recorded on the revocation's
// evidence (the outbox) before it is offered to the stream.
type StreamEvent struct {
	// stream is the stream's namespace/name.
	// +kubebuilder:validation:MaxLength=317
	Stream string `json:"stream"`
	// uid is the stream's UID: a stream deleted and created again under the same name is
	// another stream.
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
	// event is the event type URI of the token (one event per token).
	// +kubebuilder:validation:MaxLength=256
	Event string `json:"event"`
	// delivery: Pending, Delivered, Refused or GivenUp.
	Delivery SecurityEventDelivery `json:"delivery"`
	// at is when the delivery last changed.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	At *metav1.Time `json:"at,omitempty"`
}
