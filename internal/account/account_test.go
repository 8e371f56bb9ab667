package account

import (
	"testing"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

func TestCheckAttribute(t *testing.T) {
	for name, refused := range map[string]bool{
		"title": false, "Active": true, "EXTERNALID": true, "groups": true, "name.givenName": true,
		`emails[type eq "work"].value`: true, scim.SchemaEnterpriseUser: false, scim.SchemaUser: true,
		"urn:bad urn": true, "1st": true, scim.SchemaUser + ":roles": true,
	} {
		var v any = "x"
		if scim.IsSchemaURN(name) {
			v = map[string]any{"department": "x"}
		}
		if err := checkAttribute(name, v); (err != nil) != refused {
			t.Errorf("%q: refused=%v, want %v (%v)", name, err != nil, refused, err)
		}
	}
	if err := checkAttribute(scim.SchemaEnterpriseUser, map[string]any{"manager.value": "x"}); err == nil {
		t.Error("a path inside an extension must be refused")
	}
	if err := checkAttribute("name", map[string]any{`givenName[x eq "y"]`: "x"}); err == nil {
		t.Error("a path inside a complex attribute must be refused")
	}
	if err := checkAttribute("name", map[string]any{"givenName": "x"}); err != nil {
		t.Errorf("a complex attribute: %v", err)
	}
}
