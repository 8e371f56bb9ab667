package setreceiver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/nhi-dev/scim-operator/test/setreceiver"
)

const (
	issuer   = "https://operator.example/"
	audience = "https://receiver.example/"
	kid      = "k1"
	disabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	purged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
)

var now = time.Unix(1_800_000_000, 0)

// signer signs arbitrary headers and claims, so the tests can build SETs the operator never
// would.
type signer struct {
	key any
	alg jose.SignatureAlgorithm
	kid string
}

func (s signer) sign(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts.WithType(jose.ContentType(typ))
	}
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := js.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jwks(key any, keyID string, alg jose.SignatureAlgorithm) jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: keyID, Algorithm: string(alg), Use: "sig"}}}
}

// valid returns the claims of an acceptable SET; tests change them.
func valid(jti string) map[string]any {
	return map[string]any{
		"iss": issuer, "aud": audience, "iat": now.Unix(), "jti": jti,
		"sub_id": map[string]any{"format": "uri", "uri": "https://app.example.com/scim/v2/Users/42"},
		"events": map[string]any{disabled: map[string]any{}},
	}
}

func with(c map[string]any, k string, v any) map[string]any {
	if v == nil {
		delete(c, k)
	} else {
		c[k] = v
	}
	return c
}

func post(t *testing.T, h http.Handler, set string, header map[string]string) (int, map[string]string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, setreceiver.Path, strings.NewReader(set))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Authorization", "Bearer tok")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body
}

func TestVerification(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := signer{ek, jose.ES256, kid}
	keys := jwks(ek.Public(), kid, jose.ES256)
	keys.Keys = append(keys.Keys, jwks(rk.Public(), "rsa", jose.RS256).Keys...)

	tamper := func(t *testing.T, set string) string {
		parts := strings.Split(set, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		payload = []byte(strings.Replace(string(payload), "Users/42", "Users/43", 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(payload)
		return strings.Join(parts, ".")
	}
	hs256 := func(t *testing.T) string {
		js, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))},
			(&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", kid))
		payload, _ := json.Marshal(valid("hs"))
		jws, _ := js.Sign(payload)
		s, _ := jws.CompactSerialize()
		return s
	}

	tests := []struct {
		name     string
		set      func(t *testing.T) string
		header   map[string]string
		wantCode int
		wantErr  string
	}{
		{"valid ES256", func(t *testing.T) string { return good.sign(t, "secevent+jwt", valid("a")) }, nil, 202, ""},
		{"valid RS256", func(t *testing.T) string { return signer{rk, jose.RS256, "rsa"}.sign(t, "secevent+jwt", valid("b")) }, nil, 202, ""},
		{"typ with application/ prefix", func(t *testing.T) string { return good.sign(t, "application/secevent+jwt", valid("c")) }, nil, 202, ""},
		{"aud as an array", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("d"), "aud", []string{"x", audience}))
		}, nil, 202, ""},
		{"account-disabled with a RISC reason", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("e"), "events", map[string]any{disabled: map[string]any{"reason": "bulk-account"}}))
		}, nil, 202, ""},
		{"account-purged", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("f"), "events", map[string]any{purged: map[string]any{}}))
		}, nil, 202, ""},

		{"typ JWT", func(t *testing.T) string { return good.sign(t, "JWT", valid("x")) }, nil, 400, "invalid_request"},
		{"no typ", func(t *testing.T) string { return good.sign(t, "", valid("x")) }, nil, 400, "invalid_request"},
		{"tampered payload", func(t *testing.T) string { return tamper(t, good.sign(t, "secevent+jwt", valid("x"))) }, nil, 400, "invalid_key"},
		{"wrong key under a known kid", func(t *testing.T) string { return signer{other, jose.ES256, kid}.sign(t, "secevent+jwt", valid("x")) }, nil, 400, "invalid_key"},
		{"unknown kid", func(t *testing.T) string { return signer{other, jose.ES256, "k2"}.sign(t, "secevent+jwt", valid("x")) }, nil, 400, "invalid_key"},
		{"alg the key is not for", func(t *testing.T) string { return signer{rk, jose.RS256, kid}.sign(t, "secevent+jwt", valid("x")) }, nil, 400, "invalid_key"},
		{"HMAC", hs256, nil, 400, "invalid_request"},
		{"alg none", func(t *testing.T) string {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"secevent+jwt","kid":"k1"}`))
			p, _ := json.Marshal(valid("x"))
			return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
		}, nil, 400, "invalid_request"},
		{"not a JWS", func(t *testing.T) string { return "hello" }, nil, 400, "invalid_request"},
		{"wrong issuer", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "iss", "https://evil/"))
		}, nil, 400, "invalid_issuer"},
		{"wrong audience", func(t *testing.T) string { return good.sign(t, "secevent+jwt", with(valid("x"), "aud", "other")) }, nil, 400, "invalid_audience"},
		{"no jti", func(t *testing.T) string { return good.sign(t, "secevent+jwt", with(valid("x"), "jti", nil)) }, nil, 400, "invalid_request"},
		{"no iat", func(t *testing.T) string { return good.sign(t, "secevent+jwt", with(valid("x"), "iat", nil)) }, nil, 400, "invalid_request"},
		{"iat in the future", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "iat", now.Add(time.Hour).Unix()))
		}, nil, 400, "invalid_request"},
		{"iat too old", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "iat", now.Add(-25*time.Hour).Unix()))
		}, nil, 400, "invalid_request"},
		{"sub instead of sub_id", func(t *testing.T) string { return good.sign(t, "secevent+jwt", with(valid("x"), "sub", "42")) }, nil, 400, "invalid_request"},
		{"exp", func(t *testing.T) string { return good.sign(t, "secevent+jwt", with(valid("x"), "exp", now.Unix())) }, nil, 400, "invalid_request"},
		{"no sub_id", func(t *testing.T) string { return good.sign(t, "secevent+jwt", with(valid("x"), "sub_id", nil)) }, nil, 400, "invalid_request"},
		{"sub_id of an unknown format", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "sub_id", map[string]any{"format": "scim", "id": "42"}))
		}, nil, 400, "invalid_request"},
		{"sub_id without its member", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "sub_id", map[string]any{"format": "opaque"}))
		}, nil, 400, "invalid_request"},
		{"sub_id with an extra member", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "sub_id", map[string]any{"format": "opaque", "id": "1", "x": "y"}))
		}, nil, 400, "invalid_request"},
		{"two events", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "events", map[string]any{disabled: map[string]any{}, purged: map[string]any{}}))
		}, nil, 400, "invalid_request"},
		{"no event", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "events", map[string]any{}))
		}, nil, 400, "invalid_request"},
		{"another event type", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "events", map[string]any{
				"https://schemas.openid.net/secevent/risc/event-type/account-enabled": map[string]any{}}))
		}, nil, 400, "invalid_request"},
		{"a reason RISC does not define", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "events", map[string]any{disabled: map[string]any{"reason": "retired"}}))
		}, nil, 400, "invalid_request"},
		{"account-purged with attributes", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "events", map[string]any{purged: map[string]any{"reason": "hijacking"}}))
		}, nil, 400, "invalid_request"},
		{"event payload not an object", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "events", map[string]any{purged: "gone"}))
		}, nil, 400, "invalid_request"},
		{"wrong Content-Type", func(t *testing.T) string { return good.sign(t, "secevent+jwt", valid("x")) },
			map[string]string{"Content-Type": "application/json"}, 400, "invalid_request"},
		{"no bearer token", func(t *testing.T) string { return good.sign(t, "secevent+jwt", valid("x")) },
			map[string]string{"Authorization": ""}, 401, "authentication_failed"},
		{"wrong bearer token", func(t *testing.T) string { return good.sign(t, "secevent+jwt", valid("x")) },
			map[string]string{"Authorization": "Bearer nope"}, 401, "authentication_failed"},
		{"larger than 64 KiB", func(t *testing.T) string {
			return good.sign(t, "secevent+jwt", with(valid("x"), "txn", strings.Repeat("t", 70_000)))
		}, nil, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience, Keys: keys, Token: "tok",
				MaxAge: 24 * time.Hour, Now: func() time.Time { return now }})
			code, body := post(t, r, tt.set(t), tt.header)
			if code != tt.wantCode || body["err"] != tt.wantErr {
				t.Fatalf("answer %d %v, want %d %q", code, body, tt.wantCode, tt.wantErr)
			}
			if tt.wantCode == 202 {
				if len(r.Accepted()) != 1 || len(r.Rejected()) != 0 {
					t.Errorf("accepted %d, rejected %v", len(r.Accepted()), r.Rejected())
				}
				return
			}
			if len(r.Accepted()) != 0 {
				t.Errorf("a refused SET was recorded: %+v", r.Accepted())
			}
			if rej := r.Rejected(); len(rej) != 1 || rej[0].Code != tt.wantErr || body["description"] == "" {
				t.Errorf("rejections %+v, body %v", rej, body)
			}
		})
	}
}

func TestAcceptedSET(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience, Keys: jwks(ek.Public(), kid, jose.ES256),
		Now: func() time.Time { return now }})
	c := valid("j1")
	c["toe"] = now.Add(-time.Second).Unix()
	c["txn"] = "t1"
	c["events"] = map[string]any{disabled: map[string]any{"reason": "hijacking"}}
	if code, body := post(t, r, signer{ek, jose.ES256, kid}.sign(t, "secevent+jwt", c), nil); code != 202 {
		t.Fatalf("answer %d %v", code, body)
	}
	got := r.Accepted()[0]
	want := setreceiver.SET{JTI: "j1", Issuer: issuer, Audience: []string{audience}, IssuedAt: now,
		TimeOfEvent: now.Add(-time.Second), Txn: "t1", KeyID: kid, Algorithm: "ES256",
		Subject:   map[string]string{"format": "uri", "uri": "https://app.example.com/scim/v2/Users/42"},
		EventType: disabled, Event: map[string]any{"reason": "hijacking"}}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("accepted\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestReplayIsRefused(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience, Keys: jwks(ek.Public(), kid, jose.ES256),
		Now: func() time.Time { return now }})
	set := signer{ek, jose.ES256, kid}.sign(t, "secevent+jwt", valid("once"))
	if code, _ := post(t, r, set, nil); code != 202 {
		t.Fatalf("first delivery answered %d", code)
	}
	code, body := post(t, r, set, nil)
	if code != 400 || body["err"] != "invalid_request" || !strings.Contains(body["description"], "duplicate jti") {
		t.Errorf("replay answered %d %v", code, body)
	}
	// A new SET with the same jti is a replay too, even with other content.
	again := signer{ek, jose.ES256, kid}.sign(t, "secevent+jwt", with(valid("once"), "txn", "other"))
	if code, _ := post(t, r, again, nil); code != 400 {
		t.Errorf("same jti, new token answered %d", code)
	}
	if n := len(r.Accepted()); n != 1 {
		t.Errorf("%d SETs accepted, want 1", n)
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience, Keys: jwks(oldKey.Public(), kid, jose.ES256),
		Now: func() time.Time { return now }})
	if code, _ := post(t, r, signer{newKey, jose.ES256, kid}.sign(t, "secevent+jwt", valid("1")), nil); code != 400 {
		t.Fatalf("new key accepted before rotation: %d", code)
	}
	r.SetKeys(jwks(newKey.Public(), kid, jose.ES256))
	if code, _ := post(t, r, signer{newKey, jose.ES256, kid}.sign(t, "secevent+jwt", valid("1")), nil); code != 202 {
		t.Fatalf("new key refused after rotation: %d", code)
	}
}

func TestFaultsAndRestart(t *testing.T) {
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience, Keys: jwks(ek.Public(), kid, jose.ES256),
		Now: func() time.Time { return now }})
	if err := r.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	send := func(jti string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, r.URL(), strings.NewReader(signer{ek, jose.ES256, kid}.sign(t, "secevent+jwt", valid(jti))))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return resp, err
	}
	status := func(jti string) int {
		resp, err := send(jti)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		return resp.StatusCode
	}

	r.FailNext(2, http.StatusServiceUnavailable, "30")
	resp, err := send("1")
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("first faulted answer %v %v", resp, err)
	}
	if got := status("1"); got != 503 {
		t.Fatalf("second faulted answer %d", got)
	}
	if got := status("1"); got != 202 {
		t.Fatalf("answer after the faults %d", got)
	}

	r.FailNext(1, 0, "") // drop the connection
	if _, err := send("2"); err == nil {
		t.Fatal("a dropped connection answered")
	}
	r.FailNext(-1, http.StatusTooManyRequests, "")
	for range 3 {
		if got := status("2"); got != 429 {
			t.Fatalf("answer while failing until Recover %d", got)
		}
	}
	r.Recover()
	if got := status("2"); got != 202 {
		t.Fatalf("answer after Recover %d", got)
	}
	if r.Faulted() != 6 || r.Requests() != 8 {
		t.Errorf("faulted %d of %d requests, want 6 of 8", r.Faulted(), r.Requests())
	}

	// Accepted but unanswered: the retry is a replay.
	r.AcceptThenDrop(1)
	if _, err := send("4"); err == nil {
		t.Fatal("AcceptThenDrop answered")
	}
	if got := status("4"); got != 400 {
		t.Fatalf("replay after AcceptThenDrop answered %d", got)
	}

	// Stopped: connections are refused; started again on the same address, nothing is lost.
	addr := r.Addr()
	r.Stop()
	if _, err := send("3"); err == nil {
		t.Fatal("a stopped receiver answered")
	}
	if err := r.Start(addr); err != nil {
		t.Fatal(err)
	}
	if got := status("3"); got != 202 {
		t.Fatalf("answer after restart %d", got)
	}
	if got := len(r.Accepted()); got != 4 {
		t.Errorf("%d accepted, want 4", got)
	}
}

func TestOnlyPostOnThePath(t *testing.T) {
	r := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: audience})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, setreceiver.Path, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET answered %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/other", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("POST /other answered %d", rec.Code)
	}
}
