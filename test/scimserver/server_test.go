package scimserver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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

	bad, _ := scim.New(hs.URL+scimserver.BasePath, scim.Options{Auth: scim.BearerToken("nope")})
	if _, err := bad.Get(ctx, "Users", "x"); !scim.IsUnauthorized(err) {
		t.Errorf("bad token: want 401, got %v", err)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	srv, _ := scimserver.New("")
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, _ := scim.New(hs.URL+scimserver.BasePath, scim.Options{})

	srv.Faults.Add(scimserver.Once(scimserver.On(http.MethodGet, "/Users", scimserver.Fault{Status: 429, RetryAfter: 3})))
	_, err := c.List(ctx, "Users", "", 1, 10)
	if d, ok := scim.RetryAfter(err); !ok || d.Seconds() != 3 || !scim.IsRetryable(err) {
		t.Errorf("429: got %v", err)
	}
	srv.Faults.Add(scimserver.Once(scimserver.On(http.MethodPost, "/Users", scimserver.Fault{ResetAfterServing: true})))
	if _, err := c.Create(ctx, "Users", scim.Resource{"schemas": []string{scim.SchemaUser}, "userName": "lost"}); err == nil || !scim.IsRetryable(err) {
		t.Errorf("reset after serving: want a retryable transport error, got %v", err)
	}
	if srv.Users.Len() != 1 {
		t.Errorf("the POST behind the reset must have been applied; store has %d users", srv.Users.Len())
	}
	srv.Faults.Add(scimserver.Once(scimserver.On(http.MethodGet, "/Users", scimserver.Fault{Body: `{"Resources": [`})))
	if _, err := c.List(ctx, "Users", "", 1, 10); err == nil {
		t.Error("truncated JSON must fail")
	}
}
