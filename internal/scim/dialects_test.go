package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// listProvider serves /Users from n resources u1..un the way a provider dialect does.
type listProvider struct {
	n int
	// pageTotals reports the page's size as totalResults (sloppy providers).
	pageTotals bool
	// ignoreStart serves every page from the first resource (startIndex ignored).
	ignoreStart bool
	// ignoreFilter answers every filter with the unfiltered list.
	ignoreFilter bool
	// userName names resource i.
	userName func(i int) string
	requests *atomic.Int32
}

func (p listProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	q := r.URL.Query()
	start, _ := strconv.Atoi(q.Get("startIndex"))
	count, _ := strconv.Atoi(q.Get("count"))
	if start < 1 || p.ignoreStart {
		start = 1
	}
	var all []map[string]any
	for i := 1; i <= p.n; i++ {
		name := fmt.Sprintf("user%d", i)
		if p.userName != nil {
			name = p.userName(i)
		}
		all = append(all, map[string]any{"id": fmt.Sprintf("u%d", i), "userName": name, "externalId": fmt.Sprintf("c/ns/%d", i)})
	}
	if f := q.Get("filter"); f != "" && !p.ignoreFilter {
		attr, value, _ := strings.Cut(f, " eq ")
		var kept []map[string]any
		for _, u := range all {
			if fmt.Sprintf("%q", u[attr]) == value {
				kept = append(kept, u)
			}
		}
		all = kept
	}
	page := []map[string]any{}
	if start-1 < len(all) {
		page = all[start-1 : min(start-1+count, len(all))]
	}
	total := len(all)
	if p.pageTotals {
		total = len(page)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"totalResults": total, "startIndex": start, "itemsPerPage": len(page), "Resources": page})
}

func TestPagingDialects(t *testing.T) {
	tests := []struct {
		name         string
		provider     listProvider
		pageSize     int
		wantItems    int
		wantRequests int
		wantErr      error
	}{
		{"RFC totals, 250 in pages of 100", listProvider{n: 250}, 100, 250, 3, nil},
		{"RFC totals, exactly two pages", listProvider{n: 200}, 100, 200, 2, nil},
		{"RFC totals, exactly one full page: one empty page more", listProvider{n: 100}, 100, 100, 2, nil},
		{"RFC totals, a short list", listProvider{n: 7}, 100, 7, 1, nil},
		{"RFC totals, empty", listProvider{n: 0}, 100, 0, 1, nil},
		{"page-size totals, 250: read to the short page", listProvider{n: 250, pageTotals: true}, 100, 250, 3, nil},
		{"page-size totals, 300: read to the empty page", listProvider{n: 300, pageTotals: true}, 100, 300, 4, nil},
		{"page-size totals, a short list", listProvider{n: 3, pageTotals: true}, 100, 3, 1, nil},
		{"startIndex ignored, RFC totals: stops at the repeated page", listProvider{n: 250, ignoreStart: true}, 100, 0, 2, ErrPageRepeated},
		{"startIndex ignored, page-size totals: stops at the repeated page", listProvider{n: 250, ignoreStart: true, pageTotals: true}, 100, 0, 2, ErrPageRepeated},
		{"startIndex ignored, one short page: nothing repeated", listProvider{n: 30, ignoreStart: true}, 100, 30, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.provider
			p.requests = &atomic.Int32{}
			srv := httptest.NewServer(p)
			defer srv.Close()
			c, _ := New(srv.URL, Options{})
			got, err := c.ListAll(context.Background(), "Users", "", tt.pageSize, 0)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrMalformedResponse) || got != nil {
					t.Fatalf("want %v (malformed), got %d items, %v", tt.wantErr, len(got), err)
				}
			} else if err != nil || len(got) != tt.wantItems {
				t.Fatalf("got %d items, %v; want %d", len(got), err, tt.wantItems)
			}
			seen := map[string]bool{}
			for _, r := range got {
				if seen[r.ID()] {
					t.Fatalf("%s listed twice", r.ID())
				}
				seen[r.ID()] = true
			}
			if int(p.requests.Load()) != tt.wantRequests {
				t.Errorf("%d requests, want %d", p.requests.Load(), tt.wantRequests)
			}
		})
	}
}

// Find never takes a provider's word for a match: a provider that ignores the filter (and
// answers 200 with every account) or compares differently yields only real matches, userName
// compared case-insensitively (RFC 7643 caseExact=false), externalId and id exactly.
func TestFindRechecksEveryMatch(t *testing.T) {
	upper := func(i int) string {
		if i == 42 {
			return "Bot.NS"
		}
		return fmt.Sprintf("user%d", i)
	}
	tests := []struct {
		name        string
		provider    listProvider
		attr, value string
		want        []string
	}{
		{"filter ignored, externalId", listProvider{n: 150, ignoreFilter: true}, "externalId", "c/ns/7", []string{"u7"}},
		{"filter ignored, no match", listProvider{n: 150, ignoreFilter: true}, "externalId", "c/ns/none", nil},
		{"filter ignored, page-size totals", listProvider{n: 150, ignoreFilter: true, pageTotals: true}, "externalId", "c/ns/149", []string{"u149"}},
		{"filter ignored, userName in another case", listProvider{n: 150, ignoreFilter: true, userName: upper}, "userName", "bot.ns", []string{"u42"}},
		{"externalId is exact", listProvider{n: 150, ignoreFilter: true}, "externalId", "C/NS/7", nil},
		{"a filtering provider", listProvider{n: 150}, "externalId", "c/ns/9", []string{"u9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.provider
			p.requests = &atomic.Int32{}
			srv := httptest.NewServer(p)
			defer srv.Close()
			c, _ := New(srv.URL, Options{})
			got, err := c.Find(context.Background(), "Users", tt.attr, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID())
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestMemberChangesAreRFCFormAndChunked(t *testing.T) {
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPatch || r.URL.Path != "/Groups/g1" {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		bodies = append(bodies, m)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	ids := make([]string, 250)
	for i := range ids {
		ids[i] = fmt.Sprintf(`u"%d`, i) // quoted in the path
	}
	for _, chunk := range []int{0, 500} {
		bodies = nil
		if err := c.RemoveMembers(context.Background(), "g1", ids, chunk); err != nil {
			t.Fatal(err)
		}
		if len(bodies) != 3 {
			t.Fatalf("chunk %d: %d PATCHes for 250 members, want 3 (at most 100 operations each)", chunk, len(bodies))
		}
		n := 0
		for _, b := range bodies {
			ops := b["Operations"].([]any)
			if len(ops) > 100 {
				t.Errorf("%d operations in one PATCH", len(ops))
			}
			for _, o := range ops {
				op := o.(map[string]any)
				want := `members[value eq "u\"` + strconv.Itoa(n) + `"]`
				if op["op"] != "remove" || op["path"] != want || op["value"] != nil {
					t.Fatalf("operation %v, want remove %s without a value list", op, want)
				}
				n++
			}
		}
	}
	bodies = nil
	if err := c.RemoveMember(context.Background(), "g1", "u1"); err != nil {
		t.Fatal(err)
	}
	if op := bodies[0]["Operations"].([]any)[0].(map[string]any); op["path"] != `members[value eq "u1"]` || op["value"] != nil {
		t.Errorf("RemoveMember: %v", op)
	}
	bodies = nil
	if err := c.AddMembers(context.Background(), "g1", ids, 0); err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		for _, o := range b["Operations"].([]any) {
			if v := o.(map[string]any)["value"].([]any); len(v) > 100 {
				t.Errorf("%d members added in one PATCH", len(v))
			}
		}
	}
	if len(bodies) != 3 {
		t.Errorf("AddMembers: %d PATCHes, want 3", len(bodies))
	}
}
