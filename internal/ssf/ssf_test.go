package ssf

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

func TestAudienceIsAStringOrAnArray(t *testing.T) {
	for _, tc := range []struct {
		aud  Audience
		json string
	}{{Audience{"a"}, `"a"`}, {Audience{"a", "b"}, `["a","b"]`}} {
		b, err := json.Marshal(tc.aud)
		if err != nil || string(b) != tc.json {
			t.Errorf("%v marshals to %s (%v), want %s", tc.aud, b, err, tc.json)
		}
		var back Audience
		if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back, tc.aud) {
			t.Errorf("%s unmarshals to %v (%v)", b, back, err)
		}
	}
	var a Audience
	if err := json.Unmarshal([]byte(`{"x":1}`), &a); err == nil {
		t.Error("an object was taken as an audience")
	}
}

func TestEventsFollowTheResultAndTheRequest(t *testing.T) {
	all := Delivered([]string{EventAccountDisabled, EventAccountPurged, EventProvDeactivate, EventProvDelete, "https://unknown"})
	if slices.Contains(all, "https://unknown") || !slices.Contains(all, EventVerification) {
		t.Errorf("delivered %v: unknown types are ignored, verification always delivered", all)
	}
	if got := Events(scimv1.RevocationInactive, all); !slices.Equal(got, []string{EventAccountDisabled, EventProvDeactivate}) {
		t.Errorf("inactive: %v", got)
	}
	if got := Events(scimv1.RevocationNotFound, all); !slices.Equal(got, []string{EventAccountPurged, EventProvDelete}) {
		t.Errorf("not found: %v", got)
	}
	if got := Events(scimv1.RevocationOrphaned, all); got != nil {
		t.Errorf("orphaned: %v", got)
	}
	if got := Events(scimv1.RevocationNotFound, Delivered([]string{EventProvDelete})); !slices.Equal(got, []string{EventProvDelete}) {
		t.Errorf("only what the stream asked for: %v", got)
	}
}

func TestJTIIsStableAndPerStreamAndEvent(t *testing.T) {
	a := JTI("e1", "s1", EventAccountPurged)
	if a != JTI("e1", "s1", EventAccountPurged) || len(a) != 32 {
		t.Fatalf("not stable, or not 32 hex: %s", a)
	}
	for _, other := range []string{JTI("e2", "s1", EventAccountPurged), JTI("e1", "s2", EventAccountPurged), JTI("e1", "s1", EventProvDelete)} {
		if other == a {
			t.Error("two tokens share a jti")
		}
	}
}

func TestSCIMPath(t *testing.T) {
	for in, want := range map[string]string{
		"https://app.example.com/scim/v2/Users/2819c223":    "/Users/2819c223",
		"https://app.example.com/scim/v2/Agents/a%2Fb":      "/Agents/a%2Fb",
		"https://app.example.com/Users/x?token=secret#frag": "/Users/x",
	} {
		if got := scimPath(in); got != want {
			t.Errorf("scimPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReceiverSpecRefusesWhatTheAPIMustNotTake(t *testing.T) {
	many := make([]string, 33)
	for i := range many {
		many[i] = fmt.Sprintf("urn:x:%d", i)
	}
	for name, c := range map[string]StreamConfig{
		"too many events":     {EventsRequested: many},
		"an event too long":   {EventsRequested: []string{strings.Repeat("x", 257)}},
		"an unknown method":   {Delivery: &DeliveryConfig{Method: "urn:example:carrier-pigeon"}},
		"push without https":  {Delivery: &DeliveryConfig{Method: MethodPush, EndpointURL: "http://siem.example.com/events"}},
		"an authorization":    {Delivery: &DeliveryConfig{Method: MethodPush, EndpointURL: "https://siem.example.com/", AuthorizationHeader: "Bearer x"}},
		"a poll endpoint_url": {Delivery: &DeliveryConfig{Method: MethodPoll, EndpointURL: "https://elsewhere.example.com/"}},
	} {
		spec := scimv1.SecurityEventStreamSpec{Delivery: scimv1.StreamDeliverySpec{Method: scimv1.StreamPush, EndpointURL: "https://a.example/"}}
		if err := receiverSpec(&spec, c, false); err == nil {
			t.Errorf("%s: taken", name)
		}
	}
	spec := scimv1.SecurityEventStreamSpec{Description: "kept", EventsRequested: []string{EventAccountPurged}}
	if err := receiverSpec(&spec, StreamConfig{EventsRequested: []string{EventProvDelete, EventProvDelete}}, false); err != nil {
		t.Fatal(err)
	}
	if spec.Description != "kept" || !slices.Equal(spec.EventsRequested, []string{EventProvDelete}) {
		t.Errorf("PATCH: %+v", spec)
	}
	if err := receiverSpec(&spec, StreamConfig{}, true); err != nil {
		t.Fatal(err)
	}
	if spec.Description != "" || spec.EventsRequested != nil || spec.Delivery.Method != scimv1.StreamPoll {
		t.Errorf("PUT clears what it leaves out: %+v", spec)
	}
}

func TestWellKnownIssuerPaths(t *testing.T) {
	if got := issuerOf("https://ssf.example.com/", ""); got != "https://ssf.example.com" {
		t.Errorf("cluster issuer %q", got)
	}
	if got := issuerOf("https://ssf.example.com", "payments"); got != "https://ssf.example.com/namespaces/payments" {
		t.Errorf("namespace issuer %q", got)
	}
}
