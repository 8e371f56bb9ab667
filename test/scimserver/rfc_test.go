package scimserver_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const enterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

// reply is one HTTP exchange with the server, body decoded.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// call sends a request to a server started for the test (real HTTP through httptest).
func call(t *testing.T, base, method, path, body string, header ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+scimserver.BasePath+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	if len(data) > 0 {
		_ = json.Unmarshal(data, &r.body)
	}
	return r
}

func start(t *testing.T, opts ...scimserver.Option) (*scimserver.Server, string) {
	t.Helper()
	srv, err := scimserver.New("", opts...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

func resources(r reply) []map[string]any {
	list, _ := r.body["Resources"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, item := range list {
		out = append(out, item.(map[string]any))
	}
	return out
}

func q(filter string) string { return url.QueryEscape(filter) }

func TestPasswordIsNeverReturned(t *testing.T) {
	srv, base := start(t)
	created := call(t, base, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pw","password":"s3cret!"}`)
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	id, _ := created.body["id"].(string)
	if srv.Users.All()[0]["password"] != "s3cret!" {
		t.Fatal("the password is stored (as a provider would, to authenticate)")
	}
	answers := map[string]reply{
		"POST":                created,
		"GET":                 call(t, base, "GET", "/Users/"+id, ""),
		"list":                call(t, base, "GET", "/Users", ""),
		"query":               call(t, base, "GET", "/Users?filter="+q(`userName eq "pw"`), ""),
		"PUT":                 call(t, base, "PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pw","password":"n3w!"}`),
		"PATCH":               call(t, base, "PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"password","value":"again"}]}`),
		"attributes=password": call(t, base, "GET", "/Users/"+id+"?attributes=password,userName", ""),
	}
	for name, r := range answers {
		if r.status >= 300 {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
		if strings.Contains(strings.ToLower(r.raw), "password") || strings.Contains(r.raw, "s3cret") {
			t.Errorf("%s returned the password: %s", name, r.raw)
		}
	}
}

func TestServiceProviderConfigIsCompleteAndHonest(t *testing.T) {
	_, base := start(t)
	r := call(t, base, "GET", "/ServiceProviderConfig", "")
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r.body["documentationUri"] == "" || r.body["documentationUri"] == nil {
		t.Errorf("documentationUri is empty: %s", r.raw)
	}
	schemes, _ := r.body["authenticationSchemes"].([]any)
	if len(schemes) == 0 {
		t.Fatalf("no authenticationSchemes: %s", r.raw)
	}
	for _, s := range schemes {
		m := s.(map[string]any)
		for _, k := range []string{"specUri", "documentationUri", "name", "description", "type"} {
			if v, _ := m[k].(string); v == "" {
				t.Errorf("authenticationSchemes[].%s is empty: %v", k, m)
			}
		}
	}
	for feature, want := range map[string]bool{"etag": true, "patch": true, "filter": true, "bulk": false, "sort": false, "changePassword": false} {
		if got := r.body[feature].(map[string]any)["supported"]; got != want {
			t.Errorf("%s.supported = %v, want %v", feature, got, want)
		}
	}
	if _, ok := r.body["agentExtension"]; ok {
		t.Error("agentExtension advertised without WithAgents")
	}
}

// The server advertises etag: every single-resource answer carries an ETag header equal to
// meta.version, lists carry meta.version, and If-Match is enforced.
func TestETagsAreSentAndEnforced(t *testing.T) {
	_, base := start(t)
	created := call(t, base, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"etag"}`)
	id := created.body["id"].(string)
	version := func(r reply) string { v, _ := r.body["meta"].(map[string]any)["version"].(string); return v }
	if created.header.Get("ETag") == "" || created.header.Get("ETag") != version(created) {
		t.Errorf("POST: ETag %q, meta.version %q", created.header.Get("ETag"), version(created))
	}
	got := call(t, base, "GET", "/Users/"+id, "")
	if got.header.Get("ETag") != version(got) || version(got) != version(created) {
		t.Errorf("GET: ETag %q, meta.version %q, created %q", got.header.Get("ETag"), version(got), version(created))
	}
	if l := resources(call(t, base, "GET", "/Users", "")); len(l) != 1 || l[0]["meta"].(map[string]any)["version"] != version(created) {
		t.Errorf("list meta.version: %v", l)
	}
	patch := `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"x"}]}`
	p := call(t, base, "PATCH", "/Users/"+id, patch, "If-Match", version(created))
	if p.status != http.StatusOK || p.header.Get("ETag") == version(created) || p.header.Get("ETag") != version(p) {
		t.Errorf("PATCH with the current version: %d, ETag %q", p.status, p.header.Get("ETag"))
	}
	if stale := call(t, base, "PATCH", "/Users/"+id, patch, "If-Match", version(created)); stale.status != http.StatusPreconditionFailed {
		t.Errorf("PATCH with a stale version: want 412, got %d", stale.status)
	}
}

func TestAttributesAndExcludedAttributes(t *testing.T) {
	_, base := start(t)
	created := call(t, base, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","`+enterpriseURN+`"],
		"userName":"proj","displayName":"Projected","title":"t","name":{"givenName":"G","familyName":"F"},
		"`+enterpriseURN+`":{"employeeNumber":"42","department":"d"}}`)
	id := created.body["id"].(string)
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		return out
	}
	cases := []struct {
		query      string
		want, gone []string
	}{
		{"attributes=userName", []string{"id", "schemas", "userName"}, []string{"displayName", "title", "name", "meta", enterpriseURN}},
		{"attributes=DISPLAYNAME,name.givenName", []string{"id", "schemas", "displayName", "name"}, []string{"userName", "title"}},
		{"attributes=" + enterpriseURN + ":employeeNumber", []string{"id", enterpriseURN}, []string{"userName"}},
		{"excludedAttributes=title,name,id,schemas", []string{"id", "schemas", "userName", "displayName", "meta"}, []string{"title", "name"}},
		{"excludedAttributes=" + enterpriseURN, []string{"userName"}, []string{enterpriseURN}},
	}
	for _, tc := range cases {
		for _, path := range []string{"/Users/" + id + "?" + tc.query, "/Users?" + tc.query} {
			r := call(t, base, "GET", path, "")
			res := r.body
			if !strings.Contains(path, "/Users/") {
				l := resources(r)
				if len(l) != 1 {
					t.Fatalf("%s: %s", path, r.raw)
				}
				res = l[0]
			}
			for _, k := range tc.want {
				if _, ok := res[k]; !ok {
					t.Errorf("%s: %q missing from %v", path, k, keys(res))
				}
			}
			for _, k := range tc.gone {
				if _, ok := res[k]; ok {
					t.Errorf("%s: %q returned: %v", path, k, keys(res))
				}
			}
		}
	}
	r := call(t, base, "GET", "/Users/"+id+"?attributes=name.givenName,"+enterpriseURN+":employeeNumber", "")
	if name := r.body["name"].(map[string]any); name["givenName"] != "G" || name["familyName"] != nil {
		t.Errorf("sub-attribute projection: %v", name)
	}
	if ext := r.body[enterpriseURN].(map[string]any); ext["employeeNumber"] != "42" || ext["department"] != nil {
		t.Errorf("extension projection: %v", ext)
	}
}

func TestFiltersOnEnterpriseAttributesByURNPath(t *testing.T) {
	srv, base := start(t)
	srv.Users.Put(map[string]any{"userName": "a", enterpriseURN: map[string]any{"employeeNumber": "701", "manager": map[string]any{"value": "boss"}}})
	srv.Users.Put(map[string]any{"userName": "b", enterpriseURN: map[string]any{"employeeNumber": "702"}})
	srv.Users.Put(map[string]any{"userName": "c"})
	for filter, want := range map[string][]string{
		enterpriseURN + `:employeeNumber eq "701"`:                    {"a"},
		enterpriseURN + `:employeeNumber sw "70"`:                     {"a", "b"},
		enterpriseURN + `:manager.value eq "boss"`:                    {"a"},
		`userName ne "a" and ` + enterpriseURN + `:employeeNumber pr`: {"b"},
		`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "C"`:  {"c"},
	} {
		r := call(t, base, "GET", "/Users?filter="+q(filter), "")
		var got []string
		for _, u := range resources(r) {
			got = append(got, u["userName"].(string))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: got %v (%d %s), want %v", filter, got, r.status, r.raw, want)
		}
	}
}

func TestDeletedUsersLeaveTheirGroups(t *testing.T) {
	srv, base := start(t)
	u := srv.Users.Put(map[string]any{"userName": "leaver"})
	srv.Groups.Put(map[string]any{"displayName": "g", "members": []any{map[string]any{"value": u}, map[string]any{"value": "other"}}})
	if r := call(t, base, "DELETE", "/Users/"+u, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	members := srv.Groups.All()[0]["members"].([]any)
	if len(members) != 1 || members[0].(map[string]any)["value"] != "other" {
		t.Errorf("members after the delete: %v", members)
	}
}
