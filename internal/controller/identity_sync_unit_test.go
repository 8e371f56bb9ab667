package controller

import (
	"strings"
	"testing"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

// A provider's ETag is recorded only when status can hold it as it is.
func TestRecordedVersionIsBounded(t *testing.T) {
	for v, want := range map[string]string{
		`W/"1"`:                   `W/"1"`,
		strings.Repeat("x", 2048): "",
		"a\x1bb":                  "",
	} {
		if got := recordedVersion(scim.Resource{"meta": map[string]any{"version": v}}); got != want {
			t.Errorf("recordedVersion(%.20q) = %.20q, want %.20q", v, got, want)
		}
	}
}
