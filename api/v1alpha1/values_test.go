package v1alpha1

import (
	"encoding/json"
	"testing"
	"time"
)

// A stored value that does not parse still decodes (so informers keep syncing) and Parse
// names it.
func TestMalformedValuesDecodeAndReport(t *testing.T) {
	var spec ServiceIdentitySpec
	if err := json.Unmarshal([]byte(`{"targetRefs":[{"name":"a"}],"ttl":"banana","expiresAt":"2030-01-01t00:00:00z"}`), &spec); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if _, err := spec.TTL.Parse(); err == nil {
		t.Error("ttl banana parsed")
	}
	if _, err := spec.ExpiresAt.Parse(); err == nil {
		t.Error("expiresAt with a lower-case t and z parsed")
	}
	for in, want := range map[Duration]time.Duration{"90s": 90 * time.Second, "1h30m": 90 * time.Minute, "720h": 720 * time.Hour} {
		if got, err := in.Parse(); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	for _, bad := range []Duration{"", "0s", "-1h", "banana", "1d"} {
		if _, err := bad.Parse(); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if got, err := Timestamp("2030-01-01T00:00:00Z").Parse(); err != nil || !got.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("timestamp: %v, %v", got, err)
	}
}
