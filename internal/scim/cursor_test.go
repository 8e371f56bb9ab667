package scim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// cursorServer starts the reference server with the cursor-paging profile (RFC 9865 cursors,
// startIndex ignored) and n users.
func cursorServer(t *testing.T, n int) (*scimserver.Server, *Client) {
	t.Helper()
	p, ok := scimserver.ProfileNamed("cursor-paging")
	if !ok {
		t.Fatal("no cursor-paging profile")
	}
	srv, err := scimserver.New("token", scimserver.WithProfile(p))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for i := range n {
		srv.Users.Put(map[string]any{"userName": fmt.Sprintf("u-%04d", i), "externalId": fmt.Sprintf("c/ns/u-%04d", i), "active": true})
	}
	c, err := New(srv.Endpoint(), Options{Auth: BearerToken("token")})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestEachPageByCursor(t *testing.T) {
	srv, c := cursorServer(t, 450)
	ctx := context.Background()
	cfg, err := c.ServiceProviderConfig(ctx)
	if err != nil || !cfg.CursorPaging {
		t.Fatalf("the ServiceProviderConfig advertises cursor paging: %+v, %v", cfg, err)
	}
	srv.ResetCounts()
	seen, pages := map[string]bool{}, 0
	err = c.EachPageByCursor(ctx, "Users", `externalId sw "c/ns/"`, 200, 0, func(page []Resource) error {
		pages++
		for _, u := range page {
			if seen[u.ID()] {
				return fmt.Errorf("%s listed twice", u.ID())
			}
			seen[u.ID()] = true
		}
		return nil
	})
	if err != nil || len(seen) != 450 || pages != 3 {
		t.Fatalf("by cursor: %d users in %d pages, %v; want 450 in 3", len(seen), pages, err)
	}
	// A cursor the server did not issue is refused.
	if _, _, err := c.page(ctx, "Users", "", map[string][]string{"cursor": {"forged"}, "count": {"10"}}); err == nil ||
		!strings.Contains(err.Error(), "invalidCursor") {
		t.Fatalf("a forged cursor: %v, want 400 invalidCursor", err)
	}
	// The same provider paged by startIndex answers the first page again and again.
	err = c.EachPage(ctx, "Users", `externalId sw "c/ns/"`, 200, 0, func([]Resource) error { return nil })
	if !errors.Is(err, ErrPageRepeated) {
		t.Fatalf("by startIndex: %v, want ErrPageRepeated", err)
	}
}

func TestEachPageByCursorRefusesALoopingCursor(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if r.URL.Query().Has("startIndex") || !r.URL.Query().Has("cursor") {
			t.Errorf("a cursor request without cursor, or with startIndex: %s", r.URL.RawQuery)
		}
		w.Header().Set("Content-Type", "application/scim+json")
		_, _ = fmt.Fprintf(w, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1000,"itemsPerPage":1,`+
			`"Resources":[{"id":"u-%d","userName":"u"}],"nextCursor":"same"}`, i)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, Options{Auth: BearerToken("token")})
	if err != nil {
		t.Fatal(err)
	}
	err = c.EachPageByCursor(context.Background(), "Users", "", 1, 0, func([]Resource) error { return nil })
	if !errors.Is(err, ErrPageRepeated) || !strings.Contains(err.Error(), "nextCursor") || n.Load() != 2 {
		t.Fatalf("got %v after %d requests; want ErrPageRepeated naming nextCursor after 2", err, n.Load())
	}
}

func TestEachPageByCursorRefusesAHugeCursor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/scim+json")
		_, _ = fmt.Fprintf(w, `{"totalResults":2,"Resources":[{"id":"u-1","userName":"u"}],"nextCursor":%q}`, strings.Repeat("c", maxCursor+1))
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, Options{Auth: BearerToken("token")})
	if err != nil {
		t.Fatal(err)
	}
	err = c.EachPageByCursor(context.Background(), "Users", "", 1, 0, func([]Resource) error { return nil })
	if !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("got %v, want ErrMalformedResponse", err)
	}
}
