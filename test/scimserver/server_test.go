package scimserver_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// The reference server driven through the operator's client over real HTTP.
func TestReferenceServerConformance(t *testing.T) {
	ctx := context.Background()
	srv, err := scimserver.New("tok")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, err := scim.New(hs.URL+scimserver.BasePath, scim.Options{Auth: scim.BearerToken("tok")})
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := c.ServiceProviderConfig(ctx)
	if err != nil || !cfg.Patch || !cfg.Filter {
		t.Fatalf("discovery: %+v %v", cfg, err)
	}
	u, err := c.Create(ctx, "Users", scim.Resource{"schemas": []string{scim.SchemaUser}, "userName": "bot.ns", "externalId": "c/ns/bot"})
	if err != nil || u.ID() == "" || u.Version() == "" {
		t.Fatalf("create: %v %v", u, err)
	}
	if active, ok := u.Active(); !ok || !active {
		t.Errorf("a new user is active by default, got %v %v", active, ok)
	}
	if _, err := c.Create(ctx, "Users", scim.Resource{"schemas": []string{scim.SchemaUser}, "userName": "BOT.NS"}); !scim.IsConflict(err) {
		t.Errorf("userName uniqueness is case-insensitive: want 409, got %v", err)
	}
	found, err := c.Find(ctx, "Users", "externalId", "c/ns/bot")
	if err != nil || len(found) != 1 || found[0].ID() != u.ID() {
		t.Fatalf("find: %v %v", found, err)
	}
	p, err := c.Patch(ctx, "Users", u.ID(), []scim.PatchOp{{Op: "replace", Path: "active", Value: false}}, u.Version())
	if err != nil {
		t.Fatal(err)
	}
	if active, _ := p.Active(); active {
		t.Error("patch did not deactivate")
	}
	if _, err := c.Patch(ctx, "Users", u.ID(), []scim.PatchOp{{Op: "replace", Path: "displayName", Value: "x"}}, u.Version()); !scim.IsPreconditionFailed(err) {
		t.Errorf("stale If-Match: want 412, got %v", err)
	}

	g, err := c.Create(ctx, "Groups", scim.Resource{"schemas": []string{scim.SchemaGroup}, "displayName": "readers",
		"members": []map[string]any{{"value": u.ID()}, {"value": "other"}}})
	if err != nil {
		t.Fatal(err)
	}
	g, err = c.Patch(ctx, "Groups", g.ID(), []scim.PatchOp{{Op: "remove", Path: `members[value eq "` + u.ID() + `"]`}}, "")
	if err != nil {
		t.Fatal(err)
	}
	members, _ := g["members"].([]any)
	if len(members) != 1 || members[0].(map[string]any)["value"] != "other" {
		t.Errorf("RFC-form member removal left %v", members)
	}

	if err := c.Delete(ctx, "Users", u.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "Users", u.ID()); !scim.IsNotFound(err) {
		t.Errorf("deleted user: want 404, got %v", err)
	}

	rts, err := c.ResourceTypes(ctx)
	if err != nil || len(rts) != 2 {
		t.Errorf("ResourceTypes: %v %v", rts, err)
	}
	schemas, err := c.Schemas(ctx)
	if err != nil || len(schemas) < 2 {
		t.Errorf("Schemas: %d %v", len(schemas), err)
	}

	bad, _ := scim.New(hs.URL+scimserver.BasePath, scim.Options{Auth: scim.BearerToken("nope")})
	if _, err := bad.Get(ctx, "Users", "x"); !scim.IsUnauthorized(err) {
		t.Errorf("bad token: want 401, got %v", err)
	}
}

// Every fault the wrapper can produce, driven through the operator's client.
func TestFaultsThroughTheClient(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		fault scimserver.Fault
		check func(t *testing.T, err error, srv *scimserver.Server)
	}{
		{"latency beyond the call's timeout", scimserver.Fault{Latency: 2 * time.Second}, func(t *testing.T, err error, _ *scimserver.Server) {
			if !errors.Is(err, context.DeadlineExceeded) || !scim.IsRetryable(err) {
				t.Errorf("want a retryable deadline error, got %v", err)
			}
		}},
		{"429 with Retry-After", scimserver.Fault{Status: 429, RetryAfter: 3}, func(t *testing.T, err error, _ *scimserver.Server) {
			if d, ok := scim.RetryAfter(err); !ok || d != 3*time.Second || !scim.IsRetryable(err) {
				t.Errorf("want Retry-After 3s, got %v", err)
			}
		}},
		{"503 with Retry-After", scimserver.Fault{Status: 503, RetryAfter: 1, Detail: "maintenance"}, func(t *testing.T, err error, _ *scimserver.Server) {
			var e *scim.Error
			if d, ok := scim.RetryAfter(err); !ok || d != time.Second || !errors.As(err, &e) || e.Detail != "maintenance" {
				t.Errorf("want Retry-After 1s and the detail, got %v", err)
			}
		}},
		{"500 on every attempt", scimserver.Fault{Status: 500, Detail: "boom"}, func(t *testing.T, err error, srv *scimserver.Server) {
			if !scim.IsRetryable(err) || srv.Requests("GET", "Users") != 3 {
				t.Errorf("want 3 attempts then a retryable error, got %v after %d", err, srv.Requests("GET", "Users"))
			}
		}},
		{"connection reset", scimserver.Fault{ResetBeforeServing: true}, func(t *testing.T, err error, _ *scimserver.Server) {
			if err == nil || !scim.IsRetryable(err) {
				t.Errorf("want a retryable transport error, got %v", err)
			}
		}},
		{"malformed JSON", scimserver.Fault{Body: `{"Resources": [}`}, func(t *testing.T, err error, _ *scimserver.Server) {
			if !errors.Is(err, scim.ErrMalformedResponse) {
				t.Errorf("want ErrMalformedResponse, got %v", err)
			}
		}},
		{"truncated JSON", scimserver.Fault{Body: `{"totalResults":1,"Resources":[{"id":"a"`}, func(t *testing.T, err error, _ *scimserver.Server) {
			if !errors.Is(err, scim.ErrMalformedResponse) {
				t.Errorf("want ErrMalformedResponse, got %v", err)
			}
		}},
		{"an HTML error page with the wrong content type", scimserver.Fault{Body: "<html>proxy error</html>", ContentType: "text/html"}, func(t *testing.T, err error, _ *scimserver.Server) {
			if !errors.Is(err, scim.ErrMalformedResponse) {
				t.Errorf("want ErrMalformedResponse, got %v", err)
			}
		}},
		{"valid JSON with a wrong content type is tolerated", scimserver.Fault{ContentType: "text/plain"}, func(t *testing.T, err error, _ *scimserver.Server) {
			if err != nil {
				t.Errorf("want success, got %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := scimserver.New("")
			hs := httptest.NewServer(srv)
			defer hs.Close()
			c, _ := scim.New(hs.URL+scimserver.BasePath, scim.Options{Timeout: 500 * time.Millisecond, RetryBase: time.Millisecond})
			srv.Faults.Add(scimserver.On(http.MethodGet, "/Users", tc.fault))
			_, err := c.List(ctx, "Users", "", 1, 10)
			tc.check(t, err, srv)
		})
	}
}

func TestResetAfterServingAppliesTheWrite(t *testing.T) {
	ctx := context.Background()
	srv, _ := scimserver.New("")
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, _ := scim.New(hs.URL+scimserver.BasePath, scim.Options{})
	srv.Faults.Add(scimserver.Once(scimserver.On(http.MethodPost, "/Users", scimserver.Fault{ResetAfterServing: true})))
	if _, err := c.Create(ctx, "Users", scim.Resource{"schemas": []string{scim.SchemaUser}, "userName": "lost"}); err == nil || !scim.IsRetryable(err) {
		t.Errorf("reset after serving: want a retryable transport error, got %v", err)
	}
	if srv.Users.Len() != 1 {
		t.Errorf("the POST behind the reset must have been applied; store has %d users", srv.Users.Len())
	}
}
