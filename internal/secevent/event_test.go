package secevent

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestClaimsJSON(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	confirmed := time.Unix(1_799_999_990, 0)
	tests := []struct {
		name string
		ev   Event
		want string // the claims without iat and jti
	}{{
		name: "account-disabled without a reason, the account by its SCIM location",
		ev:   Event{Type: AccountDisabled, Subject: SCIMAccount("https://app.example.com/scim/v2/", "2819c223 7f76")},
		want: `{"iss":"https://op.example/","aud":"https://rcv.example/","events":{"https://schemas.openid.net/secevent/risc/event-type/account-disabled":{}},` +
			`"sub_id":{"format":"uri","uri":"https://app.example.com/scim/v2/Users/2819c223%207f76"}}`,
	}, {
		name: "account-disabled with a RISC reason, time of event and txn",
		ev: Event{Type: AccountDisabled, Reason: ReasonHijacking, Subject: Opaque("cluster/ns/agent"),
			Time: confirmed, Txn: "uid-1"},
		want: `{"iss":"https://op.example/","aud":"https://rcv.example/","toe":1799999990,"txn":"uid-1",` +
			`"events":{"https://schemas.openid.net/secevent/risc/event-type/account-disabled":{"reason":"hijacking"}},` +
			`"sub_id":{"format":"opaque","id":"cluster/ns/agent"}}`,
	}, {
		name: "account-purged, iss_sub subject",
		ev:   Event{Type: AccountPurged, Subject: IssSub("https://app.example.com/scim/v2", "42")},
		want: `{"iss":"https://op.example/","aud":"https://rcv.example/","events":{"https://schemas.openid.net/secevent/risc/event-type/account-purged":{}},` +
			`"sub_id":{"format":"iss_sub","iss":"https://app.example.com/scim/v2","sub":"42"}}`,
	}, {
		name: "email and account subjects",
		ev:   Event{Type: AccountPurged, Subject: Email("bot@example.com")},
		want: `{"iss":"https://op.example/","aud":"https://rcv.example/","events":{"https://schemas.openid.net/secevent/risc/event-type/account-purged":{}},` +
			`"sub_id":{"format":"email","email":"bot@example.com"}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClaims("https://op.example/", "https://rcv.example/", tt.ev, now)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if got["iat"] != float64(now.Unix()) {
				t.Errorf("iat = %v, want %d", got["iat"], now.Unix())
			}
			if jti, _ := got["jti"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(jti) {
				t.Errorf("jti = %q, want 128 random bits in hex", jti)
			}
			delete(got, "iat")
			delete(got, "jti")
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("claims\n got %s\nwant %s", gotJSON, wantJSON)
			}
			if c.Type() != tt.ev.Type {
				t.Errorf("Type() = %q", c.Type())
			}
		})
	}
}

func TestEventValidate(t *testing.T) {
	subject := Opaque("x")
	tests := []struct {
		name    string
		ev      Event
		wantErr string
	}{
		{"no type", Event{Subject: subject}, "event type is empty"},
		{"other RISC type", Event{Type: "https://schemas.openid.net/secevent/risc/event-type/account-enabled", Subject: subject}, "not supported"},
		{"reason RISC does not define", Event{Type: AccountDisabled, Reason: "retired", Subject: subject}, "not one RISC defines"},
		{"reason on purged", Event{Type: AccountPurged, Reason: ReasonBulkAccount, Subject: subject}, "has no reason"},
		{"no subject", Event{Type: AccountPurged}, "no subject identifier"},
		{"empty opaque id", Event{Type: AccountPurged, Subject: Opaque("")}, "id is empty"},
		{"relative uri", Event{Type: AccountPurged, Subject: URI("/Users/1")}, "not an absolute URI"},
		{"account without acct:", Event{Type: AccountPurged, Subject: Account("bot@example.com")}, "not an acct: URI"},
		{"email without @", Event{Type: AccountPurged, Subject: Email("bot")}, "not an e-mail"},
		{"huge subject", Event{Type: AccountPurged, Subject: Opaque(strings.Repeat("x", 3000))}, "longer than"},
		{"huge txn", Event{Type: AccountPurged, Subject: subject, Txn: strings.Repeat("x", 3000)}, "txn is longer"},
		{"valid disabled", Event{Type: AccountDisabled, Reason: ReasonBulkAccount, Subject: subject}, ""},
		{"valid account subject", Event{Type: AccountPurged, Subject: Account("acct:bot@example.com")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ev.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if _, cerr := NewClaims("iss", "aud", tt.ev, time.Now()); (cerr == nil) != (err == nil) {
				t.Errorf("NewClaims error %v disagrees with Validate %v", cerr, err)
			}
		})
	}
	if _, err := NewClaims("", "aud", Event{Type: AccountPurged, Subject: subject}, time.Now()); err == nil {
		t.Error("NewClaims without an issuer succeeded")
	}
}

func TestJTIsAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		j := NewJTI()
		if seen[j] {
			t.Fatalf("jti %s repeated", j)
		}
		seen[j] = true
	}
}

func TestEventTypeShort(t *testing.T) {
	if got := AccountDisabled.Short(); got != "account-disabled" {
		t.Errorf("Short() = %q", got)
	}
	if got := AccountPurged.Short(); got != "account-purged" {
		t.Errorf("Short() = %q", got)
	}
}

// A subject never carries what the endpoint's query, fragment or user information held.
func TestSCIMResourceDropsSecrets(t *testing.T) {
	for endpoint, want := range map[string]string{
		"https://app.example/scim/v2?token=s3cret":  "https://app.example/scim/v2/Users/a%2Fb",
		"https://user:pw@app.example/scim/v2/#frag": "https://app.example/scim/v2/Users/a%2Fb",
		"https://app.example/scim/v2/":              "https://app.example/scim/v2/Users/a%2Fb",
	} {
		if got := SCIMAccount(endpoint, "a/b").Member("uri"); got != want {
			t.Errorf("SCIMAccount(%q) = %q, want %q", endpoint, got, want)
		}
	}
}
