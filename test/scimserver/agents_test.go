package scimserver_test

import (
	"net/http"
	"testing"

	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const agentSchema = `"schemas":["urn:ietf:params:scim:schemas:core:2.0:Agent"]`

func TestAgentsResourceType(t *testing.T) {
	srv, base := start(t, scimserver.WithAgents())
	types := resources(call(t, base, "GET", "/ResourceTypes", ""))
	var agent map[string]any
	for _, rt := range types {
		if rt["name"] == "Agent" {
			agent = rt
		}
	}
	if agent == nil || agent["endpoint"] != "/Agents" || agent["schema"] != scimserver.SchemaAgent {
		t.Fatalf("/ResourceTypes: %v", types)
	}
	sch := call(t, base, "GET", "/Schemas/"+scimserver.SchemaAgent, "")
	if sch.status != http.StatusOK || sch.body["id"] != scimserver.SchemaAgent {
		t.Fatalf("/Schemas/<Agent>: %d %s", sch.status, sch.raw)
	}
	required := map[string]bool{}
	for _, a := range sch.body["attributes"].([]any) {
		m := a.(map[string]any)
		required[m["name"].(string)] = m["required"] == true
	}
	if !required["name"] || required["displayName"] {
		t.Errorf("name is the one required attribute: %v", required)
	}
	if ext, _ := call(t, base, "GET", "/ServiceProviderConfig", "").body["agentExtension"].(map[string]any); ext["agentsSupported"] != true {
		t.Errorf("agentExtension: %v", ext)
	}

	if r := call(t, base, "POST", "/Agents", `{`+agentSchema+`,"displayName":"no name"}`); r.status != http.StatusBadRequest {
		t.Errorf("an Agent without name: want 400, got %d", r.status)
	}
	created := call(t, base, "POST", "/Agents", `{`+agentSchema+`,"name":"helpdesk-bot","externalId":"c/ns/bot","displayName":"Helpdesk","agentType":"Assistant"}`)
	if created.status != http.StatusCreated || created.body["active"] != true || created.header.Get("ETag") == "" {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	id := created.body["id"].(string)
	if r := call(t, base, "POST", "/Agents", `{`+agentSchema+`,"name":"HELPDESK-BOT"}`); r.status != http.StatusConflict || r.body["scimType"] != "uniqueness" {
		t.Errorf("name is unique (case-insensitively): %d %s", r.status, r.raw)
	}
	for _, f := range []string{`name eq "Helpdesk-Bot"`, `externalId eq "c/ns/bot"`, `externalId sw "c/"`} {
		if l := resources(call(t, base, "GET", "/Agents?filter="+q(f), "")); len(l) != 1 || l[0]["id"] != id {
			t.Errorf("%s: %v", f, l)
		}
	}
	p := call(t, base, "PATCH", "/Agents/"+id, `{`+patchOp+`,"Operations":[{"op":"replace","path":"active","value":false}]}`)
	if p.status != http.StatusOK || p.body["active"] != false {
		t.Errorf("suspend: %d %s", p.status, p.raw)
	}
	srv.Groups.Put(map[string]any{"displayName": "agents", "members": []any{map[string]any{"value": id}}})
	if r := call(t, base, "DELETE", "/Agents/"+id, ""); r.status != http.StatusNoContent || srv.Agents.Len() != 0 {
		t.Errorf("delete: %d", r.status)
	}
	if m, _ := srv.Groups.All()[0]["members"].([]any); len(m) != 0 {
		t.Errorf("a deleted Agent leaves its groups: %v", m)
	}
}

func TestNoAgentsWithoutWithAgents(t *testing.T) {
	srv, base := start(t)
	if srv.Agents != nil {
		t.Error("Agents store without WithAgents")
	}
	for _, rt := range resources(call(t, base, "GET", "/ResourceTypes", "")) {
		if rt["name"] == "Agent" {
			t.Errorf("/ResourceTypes lists Agent: %v", rt)
		}
	}
	if r := call(t, base, "GET", "/Agents", ""); r.status != http.StatusNotFound {
		t.Errorf("/Agents: %d", r.status)
	}
	if r := call(t, base, "GET", "/Schemas/"+scimserver.SchemaAgent, ""); r.status != http.StatusNotFound {
		t.Errorf("/Schemas/<Agent>: %d", r.status)
	}
}

func TestWZDKAgents(t *testing.T) {
	srv, base := start(t, scimserver.WithWZDKAgents())
	sch := call(t, base, "GET", "/Schemas/"+scimserver.SchemaAgent, "")
	if sch.status != http.StatusOK {
		t.Fatalf("/Schemas/<Agent>: %d %s", sch.status, sch.raw)
	}
	required := map[string]bool{}
	for _, a := range sch.body["attributes"].([]any) {
		m := a.(map[string]any)
		required[m["name"].(string)] = m["required"] == true
	}
	if !required["agentUserName"] || !required["displayName"] || !required["active"] || required["owners"] {
		t.Errorf("agentUserName, displayName and active are required, owners is not: %v", required)
	}
	if _, ok := required["name"]; ok {
		t.Errorf("no name attribute in draft-wzdk: %v", required)
	}
	for _, body := range []string{
		`{` + agentSchema + `,"displayName":"x","active":true}`,              // no agentUserName
		`{` + agentSchema + `,"agentUserName":"bot","active":true}`,          // no displayName
		`{` + agentSchema + `,"name":"bot","displayName":"x","active":true}`, // the abbey name
	} {
		if r := call(t, base, "POST", "/Agents", body); r.status != http.StatusBadRequest {
			t.Errorf("%s: want 400, got %d %s", body, r.status, r.raw)
		}
	}
	owner := srv.Users.Put(map[string]any{"userName": "alice@example.com", "active": true})
	created := call(t, base, "POST", "/Agents", `{`+agentSchema+`,"agentUserName":"report-bot","displayName":"Reports","active":true,`+
		`"owners":[{"value":"`+owner+`","$ref":"`+base+`/Users/`+owner+`"}]}`)
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	if o, _ := created.body["owners"].([]any); len(o) != 1 || o[0].(map[string]any)["value"] != owner {
		t.Errorf("owners: %v", created.body["owners"])
	}
	if r := call(t, base, "POST", "/Agents", `{`+agentSchema+`,"agentUserName":"REPORT-BOT","displayName":"x","active":true}`); r.status != http.StatusConflict {
		t.Errorf("agentUserName is unique (case-insensitively): %d %s", r.status, r.raw)
	}
	if l := resources(call(t, base, "GET", "/Agents?filter="+q(`agentUserName eq "Report-Bot"`), "")); len(l) != 1 {
		t.Errorf("filter on agentUserName: %v", l)
	}
}
