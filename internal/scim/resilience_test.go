package scim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// script answers requests with the given statuses in turn (then 200 with body).
func script(t *testing.T, body string, statuses ...int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1)) - 1
		if n < len(statuses) {
			w.WriteHeader(statuses[n])
			_, _ = io.WriteString(w, `{"detail":"scripted"}`)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestRetriesIdempotentRequestsOn5xx(t *testing.T) {
	srv, calls := script(t, `{"id":"u1"}`, 500, 502)
	c, _ := New(srv.URL, Options{RetryBase: time.Millisecond})
	u, err := c.Get(context.Background(), "Users", "u1")
	if err != nil || u.ID() != "u1" || calls.Load() != 3 {
		t.Fatalf("got %v %v after %d calls, want success after 3", u, err, calls.Load())
	}
}

func TestDoesNotRetryPostOr501OrBeyondMaxRetries(t *testing.T) {
	for name, tc := range map[string]struct {
		statuses []int
		call     func(c *Client) error
		want     int32
	}{
		"POST is never retried (the caller looks up before creating again)": {[]int{500}, func(c *Client) error {
			_, err := c.Create(context.Background(), "Users", Resource{"userName": "x"})
			return err
		}, 1},
		"501 means unsupported, not transient": {[]int{501}, func(c *Client) error {
			_, err := c.Get(context.Background(), "Users", "x")
			return err
		}, 1},
		"at most MaxRetries retries": {[]int{500, 500, 500, 500}, func(c *Client) error {
			_, err := c.Get(context.Background(), "Users", "x")
			return err
		}, 3},
	} {
		t.Run(name, func(t *testing.T) {
			srv, calls := script(t, `{"id":"x"}`, tc.statuses...)
			c, _ := New(srv.URL, Options{RetryBase: time.Millisecond})
			if err := tc.call(c); err == nil {
				t.Fatal("want an error")
			}
			if calls.Load() != tc.want {
				t.Errorf("%d calls, want %d", calls.Load(), tc.want)
			}
		})
	}
}

func TestRetryAfterIsLeftToTheCaller(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{RetryBase: time.Millisecond})
	_, err := c.Get(context.Background(), "Users", "x")
	if d, ok := RetryAfter(err); !ok || d != 30*time.Second || calls.Load() != 1 {
		t.Fatalf("want one call and Retry-After 30s for the caller, got %v after %d calls", err, calls.Load())
	}
}

func TestRetriesStayInsideTheBudget(t *testing.T) {
	srv, calls := script(t, `{}`, 500, 500, 500)
	c, _ := New(srv.URL, Options{RetryBase: time.Second, Timeout: 300 * time.Millisecond})
	if _, err := c.Get(context.Background(), "Users", "x"); err == nil || calls.Load() != 1 {
		t.Fatalf("a backoff longer than the budget must not be waited: %v after %d calls", err, calls.Load())
	}
}

type countingRefresher struct {
	token       string
	invalidated int
}

func (r *countingRefresher) Authenticate(req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+r.token)
	return nil
}
func (r *countingRefresher) Invalidate() { r.invalidated++; r.token = "fresh" }

func TestUnauthorizedRefreshesOnceAndRetries(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer fresh" {
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, `{"id":"u"}`)
	}))
	defer srv.Close()
	auth := &countingRefresher{token: "expired"}
	c, _ := New(srv.URL, Options{Auth: auth})
	if _, err := c.Get(context.Background(), "Users", "u"); err != nil {
		t.Fatal(err)
	}
	if auth.invalidated != 1 || len(seen) != 2 {
		t.Errorf("invalidated %d times, %d requests; want 1 and 2", auth.invalidated, len(seen))
	}
	auth.token = "revoked-for-good"
	srv2, calls := script(t, ``, 401, 401, 401)
	c2, _ := New(srv2.URL, Options{Auth: &countingRefresher{token: "x"}})
	if _, err := c2.Get(context.Background(), "Users", "u"); !IsUnauthorized(err) || calls.Load() != 2 {
		t.Errorf("a second 401 must be final: %v after %d calls", err, calls.Load())
	}
}

func TestFindFallsBackToAScanWhenFilteringIsRefused(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.Query().Get("filter"))
		if r.URL.Query().Has("filter") {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"scimType":"invalidFilter","detail":"no filters here"}`)
			return
		}
		_, _ = io.WriteString(w, `{"totalResults":2,"Resources":[{"id":"1","externalId":"a"},{"id":"2","externalId":"b"}]}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	got, err := c.Find(context.Background(), "Users", "externalId", "b")
	if err != nil || len(got) != 1 || got[0].ID() != "2" {
		t.Fatalf("got %v %v", got, err)
	}
	if len(queries) != 2 || queries[1] != "" {
		t.Errorf("queries %q: want the filter, then an unfiltered scan", queries)
	}

	queries = nil
	c2, _ := New(srv.URL, Options{FilterUnsupported: true})
	if _, err := c2.Find(context.Background(), "Users", "externalId", "b"); err != nil || len(queries) != 1 || queries[0] != "" {
		t.Errorf("FilterUnsupported must scan without a filter: %q %v", queries, err)
	}
}

func TestFindReadsEveryPageWhenTheFilterIsIgnored(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("startIndex") == "1" {
			_, _ = io.WriteString(w, `{"totalResults":2,"Resources":[{"id":"1","userName":"other"}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"totalResults":2,"Resources":[{"id":"2","userName":"Wanted"}]}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	got, err := c.Find(context.Background(), "Users", "userName", "wanted")
	if err != nil || len(got) != 1 || got[0].ID() != "2" {
		t.Fatalf("got %v %v", got, err)
	}
}

func TestAddMembersInChunksAndRemoveInRFCForm(t *testing.T) {
	var sizes []int
	var removePath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Operations []struct {
				Op    string           `json:"op"`
				Path  string           `json:"path"`
				Value []map[string]any `json:"value"`
			}
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		for _, op := range body.Operations {
			switch op.Op {
			case "add":
				sizes = append(sizes, len(op.Value))
			case "remove":
				removePath = op.Path
			default:
				t.Errorf("unexpected op %q (a member list must never be replaced)", op.Op)
			}
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	ids := make([]string, 250)
	for i := range ids {
		ids[i] = "u" + strings.Repeat("x", i%3)
	}
	if err := c.AddMembers(context.Background(), "g1", ids, 0); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 || sizes[0] != 100 || sizes[1] != 100 || sizes[2] != 50 {
		t.Errorf("chunks %v, want 100,100,50", sizes)
	}
	if err := c.RemoveMember(context.Background(), "g1", `odd"id`); err != nil {
		t.Fatal(err)
	}
	if removePath != `members[value eq "odd\"id"]` {
		t.Errorf("remove path %q", removePath)
	}
}

func TestRateLimiterIsWaitedOn(t *testing.T) {
	srv, _ := script(t, `{"id":"u"}`)
	lim := NewLimiter(1, 2)
	c, _ := New(srv.URL, Options{Limiter: lim})
	for range 2 {
		if _, err := c.Get(context.Background(), "Users", "u"); err != nil {
			t.Fatal(err)
		}
	}
	if tokens := lim.lim.Tokens(); tokens >= 1 {
		t.Errorf("limiter has %.2f tokens after two calls with burst 2; the client did not take them", tokens)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "Users", "u"); err == nil || !strings.Contains(err.Error(), "rate limiter") {
		t.Errorf("a third call within the second must wait for the limiter, got %v", err)
	}
}

func TestBasicAuthNeverLeaks(t *testing.T) {
	srv, _ := script(t, ``, 401)
	c, _ := New(srv.URL, Options{Auth: BasicAuth{Username: "svc", Password: "p@ssw0rd-secret"}})
	_, err := c.Get(context.Background(), "Users", "u")
	if err == nil || strings.Contains(err.Error(), "p@ssw0rd-secret") || strings.Contains(err.Error(), "c3Zj") {
		t.Fatalf("error %v leaks the password or the encoded header", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != 401 {
		t.Fatalf("want a typed 401, got %v", err)
	}
}
