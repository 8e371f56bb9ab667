package scim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// recorded is what the test handler saw.
type recorded struct {
	method, path, query, auth, contentType, ifMatch string
	body                                            map[string]any
}

func serve(t *testing.T, status int, header map[string]string, body string) (*Client, *recorded) {
	t.Helper()
	rec := &recorded{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.method, rec.path, rec.query = r.Method, r.URL.Path, r.URL.RawQuery
		rec.auth, rec.contentType, rec.ifMatch = r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("If-Match")
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &rec.body); err != nil {
				t.Errorf("request body is not JSON: %v", err)
			}
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/scim/v2/", Options{Auth: BearerToken("s3cret-token"), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func TestRequests(t *testing.T) {
	ctx := context.Background()
	user := `{"id":"u1","userName":"a.b","externalId":"c/ns/a","active":true,"meta":{"version":"W/\"3\""}}`
	tests := []struct {
		name        string
		status      int
		respBody    string
		call        func(c *Client) (Resource, error)
		wantMethod  string
		wantPath    string
		wantQuery   string
		wantBody    map[string]any
		wantIfMatch string
		wantID      string
	}{
		{
			name: "get", status: 200, respBody: user,
			call:       func(c *Client) (Resource, error) { return c.Get(ctx, "Users", "u1") },
			wantMethod: "GET", wantPath: "/scim/v2/Users/u1", wantID: "u1",
		},
		{
			name: "get escapes the id", status: 200, respBody: user,
			call:       func(c *Client) (Resource, error) { return c.Get(ctx, "Users", "a/b c") },
			wantMethod: "GET", wantPath: "/scim/v2/Users/a/b c", wantID: "u1",
		},
		{
			name: "create", status: 201, respBody: user,
			call: func(c *Client) (Resource, error) {
				return c.Create(ctx, "Users", Resource{"userName": "a.b", "active": true})
			},
			wantMethod: "POST", wantPath: "/scim/v2/Users", wantID: "u1",
			wantBody: map[string]any{"userName": "a.b", "active": true},
		},
		{
			name: "patch with lowercase ops, real booleans and If-Match", status: 200, respBody: user,
			call: func(c *Client) (Resource, error) {
				return c.Patch(ctx, "Users", "u1", []PatchOp{{Op: "replace", Path: "active", Value: false}}, `W/"3"`)
			},
			wantMethod: "PATCH", wantPath: "/scim/v2/Users/u1", wantID: "u1", wantIfMatch: `W/"3"`,
			wantBody: map[string]any{
				"schemas":    []any{SchemaPatchOp},
				"Operations": []any{map[string]any{"op": "replace", "path": "active", "value": false}},
			},
		},
		{
			name: "patch answered 204", status: 204,
			call: func(c *Client) (Resource, error) {
				return c.Patch(ctx, "Users", "u1", []PatchOp{{Op: "replace", Path: "displayName", Value: "x"}}, "")
			},
			wantMethod: "PATCH", wantPath: "/scim/v2/Users/u1",
			wantBody: map[string]any{
				"schemas":    []any{SchemaPatchOp},
				"Operations": []any{map[string]any{"op": "replace", "path": "displayName", "value": "x"}},
			},
		},
		{
			name: "replace", status: 200, respBody: user,
			call: func(c *Client) (Resource, error) {
				return c.Replace(ctx, "Users", "u1", Resource{"userName": "a.b"}, "")
			},
			wantMethod: "PUT", wantPath: "/scim/v2/Users/u1", wantID: "u1", wantBody: map[string]any{"userName": "a.b"},
		},
		{
			name: "delete", status: 204,
			call:       func(c *Client) (Resource, error) { return nil, c.Delete(ctx, "Users", "u1") },
			wantMethod: "DELETE", wantPath: "/scim/v2/Users/u1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := serve(t, tt.status, nil, tt.respBody)
			res, err := tt.call(c)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if rec.method != tt.wantMethod || rec.path != tt.wantPath {
				t.Errorf("request %s %s, want %s %s", rec.method, rec.path, tt.wantMethod, tt.wantPath)
			}
			if rec.auth != "Bearer s3cret-token" {
				t.Errorf("Authorization header %q", rec.auth)
			}
			if rec.ifMatch != tt.wantIfMatch {
				t.Errorf("If-Match %q, want %q", rec.ifMatch, tt.wantIfMatch)
			}
			if tt.wantBody != nil {
				if rec.contentType != "application/scim+json" {
					t.Errorf("Content-Type %q", rec.contentType)
				}
				if !jsonEq(rec.body, tt.wantBody) {
					t.Errorf("body %v, want %v", rec.body, tt.wantBody)
				}
			}
			if got := res.ID(); got != tt.wantID {
				t.Errorf("id %q, want %q", got, tt.wantID)
			}
		})
	}
}

func jsonEq(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestFindQuotesAndRechecks(t *testing.T) {
	body := `{"schemas":["` + SchemaListResponse + `"],"totalResults":"2","Resources":[
		{"id":"1","userName":"Bot.NS","externalId":"x"},{"id":"2","userName":"other","externalId":"y"}]}`
	c, rec := serve(t, 200, nil, body)
	got, err := c.Find(context.Background(), "Users", "userName", `bot.ns`)
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := url.ParseQuery(rec.query); q.Get("filter") != `userName eq "bot.ns"` {
		t.Errorf("query %q", rec.query)
	}
	if len(got) != 1 || got[0].ID() != "1" {
		t.Errorf("client-side re-check kept %v, want only id 1 (case-insensitive userName)", got)
	}
}

func TestFilterEscaping(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:        `externalId eq "plain"`,
		`with "quote"`: `externalId eq "with \"quote\""`,
		`back\slash`:   `externalId eq "back\\slash"`,
		`a<b>&c`:       `externalId eq "a<b>&c"`,
	} {
		if got := Filter("externalId", in); got != want {
			t.Errorf("Filter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestErrorStatuses(t *testing.T) {
	tests := []struct {
		status     int
		header     map[string]string
		body       string
		notFound   bool
		conflict   bool
		retryable  bool
		unauth     bool
		precond    bool
		retryAfter time.Duration
		detail     string
		scimType   string
	}{
		{status: 400, body: `{"status":"400","scimType":"invalidValue","detail":"userType is bad"}`, detail: "userType is bad", scimType: "invalidValue"},
		{status: 401, body: `{"status":401,"detail":"no"}`, unauth: true, detail: "no"},
		{status: 403, body: `not json`, unauth: true},
		{status: 404, body: `{"detail":"Resource u1 not found."}`, notFound: true, detail: "Resource u1 not found."},
		{status: 409, body: `{"scimType":"uniqueness","detail":"taken"}`, conflict: true, detail: "taken", scimType: "uniqueness"},
		{status: 412, body: `{}`, precond: true},
		{status: 429, header: map[string]string{"Retry-After": "7"}, retryable: true, retryAfter: 7 * time.Second},
		{status: 500, body: `<html>oops</html>`, retryable: true},
		{status: 501, body: `{}`},
		{status: 503, header: map[string]string{"Retry-After": "2"}, retryable: true, retryAfter: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			c, _ := serve(t, tt.status, tt.header, tt.body)
			_, err := c.Get(context.Background(), "Users", "u1")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("want *scim.Error, got %T %v", err, err)
			}
			if se.Status != tt.status || se.Detail != tt.detail || se.ScimType != tt.scimType {
				t.Errorf("got %+v", se)
			}
			checks := map[string][2]bool{
				"IsNotFound": {IsNotFound(err), tt.notFound}, "IsConflict": {IsConflict(err), tt.conflict},
				"IsRetryable": {IsRetryable(err), tt.retryable}, "IsUnauthorized": {IsUnauthorized(err), tt.unauth},
				"IsPreconditionFailed": {IsPreconditionFailed(err), tt.precond},
			}
			for name, c := range checks {
				if c[0] != c[1] {
					t.Errorf("%s = %t, want %t", name, c[0], c[1])
				}
			}
			if d, _ := RetryAfter(err); d != tt.retryAfter {
				t.Errorf("RetryAfter %v, want %v", d, tt.retryAfter)
			}
			if strings.Contains(err.Error(), "s3cret-token") {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if d := parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now); d != 90*time.Second {
		t.Errorf("got %v", d)
	}
	if d := parseRetryAfter("3153600000", now); d != MaxRetryAfter {
		t.Errorf("a century of Retry-After: %s, want at most %s", d, MaxRetryAfter)
	}
	if d := parseRetryAfter(now.Add(1000*time.Hour).Format(http.TimeFormat), now); d != MaxRetryAfter {
		t.Errorf("a far Retry-After date: %s, want %s", d, MaxRetryAfter)
	}
	if d := parseRetryAfter("soon", now); d != 0 {
		t.Errorf("got %v", d)
	}
}

func TestNetworkErrorsAreRetryableAndDoNotLeak(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := New(url+"/scim/v2", Options{Auth: BearerToken("s3cret-token"), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), "Users", "u1")
	if err == nil || !IsRetryable(err) {
		t.Fatalf("want a retryable error, got %v", err)
	}
	if strings.Contains(err.Error(), "s3cret-token") {
		t.Errorf("error leaks the token: %v", err)
	}
}

func TestTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c, _ := New(srv.URL, Options{Timeout: 100 * time.Millisecond})
	_, err := c.Get(context.Background(), "Users", "u1")
	if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
		t.Fatalf("want a retryable deadline error, got %v", err)
	}
}

func TestBodySizeCap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"id":"`+strings.Repeat("x", 2048)+`"}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{MaxBodyBytes: 1024})
	if _, err := c.Get(context.Background(), "Users", "u1"); !errors.Is(err, ErrLimitExceeded) || IsRetryable(err) {
		t.Fatalf("want a non-retryable ErrLimitExceeded, got %v", err)
	}
}

func TestNewRejectsBadEndpoints(t *testing.T) {
	for _, e := range []string{"ftp://x/scim", "https://", "https://user:pw@host/scim", "::"} {
		if _, err := New(e, Options{}); err == nil {
			t.Errorf("New(%q) accepted", e)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%q) error leaks the password: %v", e, err)
		}
	}
}

func TestParseTolerance(t *testing.T) {
	l, err := ParseListResponse([]byte(`{"totalResults":"3","startIndex":"1","itemsPerPage":2,"resources":[{"id":"a"}]}`))
	if err != nil || l.TotalResults != 3 || l.StartIndex != 1 || l.ItemsPerPage != 2 || len(l.Resources) != 1 {
		t.Fatalf("got %+v, %v", l, err)
	}
	cfg, err := ParseServiceProviderConfig([]byte(`{"patch":{"supported":"true"},"filter":{"supported":true,"maxResults":"50"},"etag":{"supported":false}}`))
	if err != nil || !cfg.Patch || !cfg.Filter || cfg.ETag || cfg.MaxResults != 50 {
		t.Fatalf("got %+v, %v", cfg, err)
	}
	if _, err := ParseResource([]byte(`[1,2]`)); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("want ErrMalformedResponse for a non-object, got %v", err)
	}
	if _, err := ParseListResponse([]byte(`{"totalResults":"many"}`)); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("want ErrMalformedResponse, got %v", err)
	}
}

func FuzzParseListResponse(f *testing.F) {
	f.Add([]byte(`{"totalResults":1,"Resources":[{"id":"a"}]}`))
	f.Add([]byte(`{"totalResults":"1","resources":[]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseListResponse(b)
		if err == nil && l == nil {
			t.Fatal("nil list without error")
		}
	})
}

func TestListAllPaging(t *testing.T) {
	var starts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := r.URL.Query().Get("startIndex")
		starts = append(starts, start)
		// A provider that returns 2 per page whatever count says and lies in itemsPerPage.
		pages := map[string]string{
			"1": `{"totalResults":5,"itemsPerPage":10,"Resources":[{"id":"1"},{"id":"2"}]}`,
			"3": `{"totalResults":"5","itemsPerPage":10,"Resources":[{"id":"3"},{"id":"4"}]}`,
			"5": `{"totalResults":5,"Resources":[{"id":"5"}]}`,
		}
		_, _ = io.WriteString(w, pages[start])
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	got, err := c.ListAll(context.Background(), "Users", "", 10, 0)
	if err != nil || len(got) != 5 || got[4].ID() != "5" {
		t.Fatalf("got %v, %v", got, err)
	}
	if strings.Join(starts, ",") != "1,3,5" {
		t.Errorf("startIndex sequence %v, want 1,3,5", starts)
	}
}

func TestListAllStopsOnEmptyPageAndCapsPages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("startIndex") == "2" {
			_, _ = io.WriteString(w, `{"Resources":[]}`)
			return
		}
		_, _ = io.WriteString(w, `{"Resources":[{"id":"x"}]}`) // no totalResults at all
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	if got, err := c.ListAll(context.Background(), "Users", "", 1, 0); err != nil || len(got) != 1 {
		t.Fatalf("empty page must stop: %v %v", got, err)
	}
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"Resources":[{"id":"again"}]}`)
	}))
	defer endless.Close()
	c2, _ := New(endless.URL, Options{})
	if _, err := c2.ListAll(context.Background(), "Users", "", 1, 3); err == nil {
		t.Fatal("a provider that never stops must hit the page cap")
	}
}

func FuzzParseServiceProviderConfig(f *testing.F) {
	f.Add([]byte(`{"patch":{"supported":true},"filter":{"supported":"true","maxResults":"200"}}`))
	f.Add([]byte(`{"etag":{"supported":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseServiceProviderConfig(b)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && !errors.Is(err, ErrMalformedResponse) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzParseResource(f *testing.F) {
	f.Add([]byte(`{"id":"a","active":"true","meta":{"version":"W/\"1\""}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResource(b)
		if err == nil {
			_, _ = r.Active()
			_ = r.Version() + r.ID() + r.UserName() + r.ExternalID()
		} else if !errors.Is(err, ErrMalformedResponse) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
