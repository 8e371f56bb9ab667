package scimserver_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const (
	userSchema = `"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]`
	patchOp    = `"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]`
)

func TestProfilesAreNamedAndDistinct(t *testing.T) {
	ps := scimserver.Profiles()
	if len(ps) == 0 || ps[0].Name != "rfc" || ps[0].Quirks != (scimserver.Quirks{}) {
		t.Fatalf("rfc (no quirks) must come first: %+v", ps[0])
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p.Name] || p.Description == "" {
			t.Errorf("profile %q: duplicate or undocumented", p.Name)
		}
		seen[p.Name] = true
		if got, ok := scimserver.ProfileNamed(p.Name); !ok || !reflect.DeepEqual(got, p) {
			t.Errorf("ProfileNamed(%q) = %+v %v", p.Name, got, ok)
		}
		if p.Name != "rfc" && p.Quirks == (scimserver.Quirks{}) {
			t.Errorf("profile %q has no quirk", p.Name)
		}
	}
	for _, name := range []string{"aws-identity-center", "scim2-204", "case-sensitive-filters", "lying-spc", "entra-groups", "put-merges", "sloppy-lists", "stale-members"} {
		if !seen[name] {
			t.Errorf("profile %q is missing", name)
		}
	}
	if _, ok := scimserver.ProfileNamed("nope"); ok {
		t.Error("an unknown profile was found")
	}
	// Every quirk is used by at least one profile.
	used := reflect.ValueOf(scimserver.Quirks{})
	for i := range used.NumField() {
		name := used.Type().Field(i).Name
		found := false
		for _, p := range ps {
			if !reflect.ValueOf(p.Quirks).Field(i).IsZero() {
				found = true
			}
		}
		if !found {
			t.Errorf("quirk %s is in no profile", name)
		}
	}
}

// Each quirk, switched on at run time with SetQuirks, against its RFC behaviour.
func TestQuirks(t *testing.T) {
	newUser := func(t *testing.T, base, userName string) string {
		t.Helper()
		r := call(t, base, "POST", "/Users", `{`+userSchema+`,"userName":"`+userName+`","displayName":"d","title":"t"}`)
		if r.status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", userName, r.status, r.raw)
		}
		return r.body["id"].(string)
	}
	cases := []struct {
		name  string
		quirk scimserver.Quirks
		// check runs against a fresh server, once with the quirk off (quirk=false) and once on.
		check func(t *testing.T, srv *scimserver.Server, base string, quirk bool)
	}{
		{"PatchNoContent", scimserver.Quirks{PatchNoContent: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			id := newUser(t, base, "p")
			r := call(t, base, "PATCH", "/Users/"+id, `{`+patchOp+`,"Operations":[{"op":"replace","path":"active","value":false}]}`)
			if quirk && (r.status != http.StatusNoContent || r.raw != "") || !quirk && (r.status != http.StatusOK || r.body["active"] != false) {
				t.Errorf("PATCH: %d %q", r.status, r.raw)
			}
			if g := call(t, base, "GET", "/Users/"+id, ""); g.body["active"] != false {
				t.Errorf("the PATCH was not applied: %s", g.raw)
			}
		}},
		{"PatchUnsupported", scimserver.Quirks{PatchUnsupported: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			id := newUser(t, base, "p")
			r := call(t, base, "PATCH", "/Users/"+id, `{`+patchOp+`,"Operations":[{"op":"replace","path":"active","value":false}]}`)
			if (r.status == http.StatusNotImplemented) != quirk {
				t.Errorf("PATCH: %d", r.status)
			}
			spc := call(t, base, "GET", "/ServiceProviderConfig", "")
			if spc.body["patch"].(map[string]any)["supported"] == quirk {
				t.Errorf("an honest SPC says patch.supported=%v", !quirk)
			}
		}},
		{"TotalResultsPageSize", scimserver.Quirks{TotalResultsPageSize: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			for i := range 5 {
				newUser(t, base, fmt.Sprint("u", i))
			}
			r := call(t, base, "GET", "/Users?startIndex=1&count=2", "")
			want := 5.0
			if quirk {
				want = 2
			}
			if r.body["totalResults"] != want || len(resources(r)) != 2 {
				t.Errorf("totalResults %v with %d resources, want %v", r.body["totalResults"], len(resources(r)), want)
			}
		}},
		{"NoLocation", scimserver.Quirks{NoLocation: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			r := call(t, base, "POST", "/Users", `{`+userSchema+`,"userName":"loc"}`)
			if r.status != http.StatusCreated || (r.header.Get("Location") == "") != quirk {
				t.Errorf("POST: %d Location %q", r.status, r.header.Get("Location"))
			}
		}},
		{"NoETags", scimserver.Quirks{NoETags: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			if spc := call(t, base, "GET", "/ServiceProviderConfig", ""); spc.body["etag"].(map[string]any)["supported"] == quirk {
				t.Errorf("an honest SPC: etag %v", spc.body["etag"])
			}
			id := newUser(t, base, "e")
			g := call(t, base, "GET", "/Users/"+id, "")
			_, hasVersion := g.body["meta"].(map[string]any)["version"]
			if (g.header.Get("ETag") == "") != quirk || hasVersion == quirk {
				t.Errorf("GET: ETag %q, meta %v", g.header.Get("ETag"), g.body["meta"])
			}
			l := resources(call(t, base, "GET", "/Users", ""))
			if _, ok := l[0]["meta"].(map[string]any)["version"]; ok == quirk {
				t.Errorf("list meta: %v", l[0]["meta"])
			}
			stale := call(t, base, "PATCH", "/Users/"+id, `{`+patchOp+`,"Operations":[{"op":"replace","path":"title","value":"x"}]}`, "If-Match", `W/"999"`)
			if (stale.status == http.StatusPreconditionFailed) == quirk {
				t.Errorf("stale If-Match: %d", stale.status)
			}
		}},
		{"ETagBodyHash", scimserver.Quirks{ETagBodyHash: true}, func(t *testing.T, srv *scimserver.Server, base string, quirk bool) {
			id := newUser(t, base, "h")
			etag := call(t, base, "GET", "/Users/"+id, "").header.Get("ETag")
			if strings.HasPrefix(etag, `W/`) == quirk || len(etag) < 3 {
				t.Errorf("ETag %q", etag)
			}
			srv.Users.Mutate(id, func(a map[string]any) { a["title"] = "changed" })
			after := call(t, base, "GET", "/Users/"+id, "").header.Get("ETag")
			if after == etag {
				t.Errorf("a change left the ETag %q", after)
			}
			r := call(t, base, "PATCH", "/Users/"+id, `{`+patchOp+`,"Operations":[{"op":"replace","path":"title","value":"x"}]}`, "If-Match", etag)
			if r.status != http.StatusPreconditionFailed {
				t.Errorf("stale If-Match: %d", r.status)
			}
			r = call(t, base, "PATCH", "/Users/"+id, `{`+patchOp+`,"Operations":[{"op":"replace","path":"title","value":"x"}]}`, "If-Match", after)
			if r.status != http.StatusOK || r.header.Get("ETag") != r.body["meta"].(map[string]any)["version"] {
				t.Errorf("current If-Match: %d %q %v", r.status, r.header.Get("ETag"), r.body["meta"])
			}
		}},
		{"CaseSensitiveEq", scimserver.Quirks{CaseSensitiveEq: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			newUser(t, base, "Bot.NS")
			for _, f := range []string{`userName eq "bot.ns"`, `displayName eq "D"`, `userName eq "bot.ns" and title eq "t"`} {
				n := len(resources(call(t, base, "GET", "/Users?filter="+q(f), "")))
				if (n == 0) != quirk {
					t.Errorf("%s: %d matches", f, n)
				}
			}
			if r := call(t, base, "POST", "/Users", `{`+userSchema+`,"userName":"BOT.ns"}`); r.status != http.StatusConflict {
				t.Errorf("uniqueness stays case-insensitive: %d", r.status)
			}
		}},
		{"EqOnly", scimserver.Quirks{EqOnly: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			newUser(t, base, "eq")
			for _, f := range []string{`userName sw "e"`, `userName eq "eq" or title pr`, `title pr`} {
				r := call(t, base, "GET", "/Users?filter="+q(f), "")
				if quirk && (r.status != http.StatusBadRequest || r.body["scimType"] != "invalidFilter") || !quirk && r.status != http.StatusOK {
					t.Errorf("%s: %d %s", f, r.status, r.raw)
				}
			}
			if r := call(t, base, "GET", "/Users?filter="+q(`userName eq "eq" and title eq "t"`), ""); len(resources(r)) != 1 {
				t.Errorf("eq and eq: %d %s", r.status, r.raw)
			}
		}},
		{"MalformedFilter unfiltered", scimserver.Quirks{MalformedFilter: scimserver.FilterFailureUnfiltered}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			newUser(t, base, "a")
			newUser(t, base, "b")
			r := call(t, base, "GET", "/Users?filter="+q(`userName eq "a" and (`), "")
			if quirk && (r.status != http.StatusOK || len(resources(r)) != 2) || !quirk && (r.status != http.StatusBadRequest || r.body["scimType"] != "invalidFilter") {
				t.Errorf("%d %s", r.status, r.raw)
			}
		}},
		{"MalformedFilter empty", scimserver.Quirks{MalformedFilter: scimserver.FilterFailureEmpty}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			newUser(t, base, "a")
			r := call(t, base, "GET", "/Users?filter="+q(`userName eq`), "")
			if quirk && (r.status != http.StatusOK || len(resources(r)) != 0 || r.body["totalResults"] != 0.0) || !quirk && r.status != http.StatusBadRequest {
				t.Errorf("%d %s", r.status, r.raw)
			}
		}},
		{"MalformedFilter 500", scimserver.Quirks{MalformedFilter: scimserver.FilterFailure500}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			r := call(t, base, "GET", "/Users?filter="+q(`((`), "")
			if (r.status == http.StatusInternalServerError) != quirk || !quirk && r.status != http.StatusBadRequest {
				t.Errorf("%d %s", r.status, r.raw)
			}
		}},
		{"PutMerges", scimserver.Quirks{PutMerges: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			id := newUser(t, base, "put")
			r := call(t, base, "PUT", "/Users/"+id, `{`+userSchema+`,"userName":"put","displayName":"new"}`)
			if r.status != http.StatusOK || r.body["displayName"] != "new" || (r.body["title"] == "t") != quirk {
				t.Errorf("PUT: %d %s", r.status, r.raw)
			}
		}},
		{"RemoveValueListWipes", scimserver.Quirks{RemoveValueListWipes: true}, func(t *testing.T, srv *scimserver.Server, base string, quirk bool) {
			g := srv.Groups.Put(map[string]any{"displayName": "g", "members": []any{map[string]any{"value": "a"}, map[string]any{"value": "b"}, map[string]any{"value": "c"}}})
			r := call(t, base, "PATCH", "/Groups/"+g, `{`+patchOp+`,"Operations":[{"op":"remove","path":"members[value eq \"a\"]"}]}`)
			if r.status != http.StatusOK || len(r.body["members"].([]any)) != 2 {
				t.Errorf("RFC-form removal must remove one member under every profile: %d %s", r.status, r.raw)
			}
			r = call(t, base, "PATCH", "/Groups/"+g, `{`+patchOp+`,"Operations":[{"op":"remove","path":"members","value":[{"value":"b"}]}]}`)
			members, _ := r.body["members"].([]any)
			if r.status != http.StatusOK || quirk && len(members) != 0 || !quirk && (len(members) != 1 || members[0].(map[string]any)["value"] != "c") {
				t.Errorf("value-list removal: %d %s", r.status, r.raw)
			}
		}},
		{"StaleMembers", scimserver.Quirks{StaleMembers: true}, func(t *testing.T, srv *scimserver.Server, base string, quirk bool) {
			u := newUser(t, base, "gone")
			srv.Groups.Put(map[string]any{"displayName": "g", "members": []any{map[string]any{"value": u}}})
			call(t, base, "DELETE", "/Users/"+u, "")
			members, _ := srv.Groups.All()[0]["members"].([]any)
			if (len(members) == 1) != quirk {
				t.Errorf("members after the delete: %v", members)
			}
		}},
		{"MaxMemberOps", scimserver.Quirks{MaxMemberOps: 3}, func(t *testing.T, srv *scimserver.Server, base string, quirk bool) {
			g := srv.Groups.Put(map[string]any{"displayName": "g"})
			add := func(n int) reply {
				var vals []string
				for i := range n {
					vals = append(vals, fmt.Sprintf(`{"value":"m%d"}`, i))
				}
				return call(t, base, "PATCH", "/Groups/"+g, `{`+patchOp+`,"Operations":[{"op":"add","path":"members","value":[`+strings.Join(vals, ",")+`]}]}`)
			}
			if r := add(3); r.status != http.StatusOK {
				t.Errorf("3 members: %d %s", r.status, r.raw)
			}
			if r := add(4); (r.status == http.StatusBadRequest) != quirk {
				t.Errorf("4 members: %d %s", r.status, r.raw)
			}
		}},
		{"SPCAdvertisesAll", scimserver.Quirks{SPCAdvertisesAll: true, NoETags: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			spc := call(t, base, "GET", "/ServiceProviderConfig", "")
			for _, f := range []string{"sort", "bulk", "changePassword"} {
				if spc.body[f].(map[string]any)["supported"] != quirk {
					t.Errorf("%s: %v", f, spc.body[f])
				}
			}
			// Honest: etag supported (off) or lying about it (on, while NoETags sends none).
			if spc.body["etag"].(map[string]any)["supported"] != true {
				t.Errorf("etag: %v", spc.body["etag"])
			}
		}},
		{"IgnoresAttributes", scimserver.Quirks{IgnoresAttributes: true}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			id := newUser(t, base, "attrs")
			r := call(t, base, "GET", "/Users/"+id+"?attributes=userName", "")
			if _, ok := r.body["title"]; ok != quirk {
				t.Errorf("%s", r.raw)
			}
		}},
		{"IgnoresStartIndex and MaxPageSize", scimserver.Quirks{IgnoresStartIndex: true, MaxPageSize: 2}, func(t *testing.T, _ *scimserver.Server, base string, quirk bool) {
			for i := range 5 {
				newUser(t, base, fmt.Sprint("u", i))
			}
			r := call(t, base, "GET", "/Users?startIndex=3&count=10", "")
			l := resources(r)
			if quirk && (len(l) != 2 || l[0]["userName"] != "u0") || !quirk && (len(l) != 3 || l[0]["userName"] != "u2") {
				t.Errorf("%d resources from %v", len(l), l)
			}
			spc := call(t, base, "GET", "/ServiceProviderConfig", "")
			if max := spc.body["filter"].(map[string]any)["maxResults"]; (max == 2.0) != quirk {
				t.Errorf("filter.maxResults %v", max)
			}
		}},
	}
	for _, tc := range cases {
		for _, on := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/%v", tc.name, on), func(t *testing.T) {
				srv, base := start(t)
				if on {
					srv.SetQuirks(tc.quirk)
				}
				tc.check(t, srv, base, on)
			})
		}
	}
}

func TestWithProfileAndSetQuirks(t *testing.T) {
	p, _ := scimserver.ProfileNamed("scim2-204")
	srv, base := start(t, scimserver.WithProfile(p))
	if srv.Quirks() != p.Quirks {
		t.Fatalf("quirks %+v", srv.Quirks())
	}
	r := call(t, base, "POST", "/Users", `{`+userSchema+`,"userName":"flip"}`)
	id := r.body["id"].(string)
	patch := `{` + patchOp + `,"Operations":[{"op":"replace","path":"title","value":"x"}]}`
	if r := call(t, base, "PATCH", "/Users/"+id, patch); r.status != http.StatusNoContent {
		t.Errorf("scim2-204: %d", r.status)
	}
	srv.SetQuirks(scimserver.Quirks{}) // flipped mid-flow
	if r := call(t, base, "PATCH", "/Users/"+id, patch); r.status != http.StatusOK {
		t.Errorf("after SetQuirks: %d", r.status)
	}
}
