package governance

import (
	"strings"
	"testing"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// The attester is read from the annotations the review-attestation policy writes; unreadable
// groups count as none (the check is then stricter), and the groups sent are bounded.
func TestUnitAttesterOf(t *testing.T) {
	many := "[" + strings.Repeat(`"g",`, maxReviewerGroups+10) + `"g"]`
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		user        string
		groups      int
		first       string
	}{
		{"nothing recorded", map[string]string{scimv1.ReviewedAtAnnotation: "2026-01-01T00:00:00Z"}, "", 0, ""},
		{"user and groups", map[string]string{scimv1.ReviewedByAnnotation: "rita",
			scimv1.ReviewedByGroupsAnnotation: `["cn=reviewers,ou=groups","system:authenticated"]`}, "rita", 2, "cn=reviewers,ou=groups"},
		{"groups not JSON", map[string]string{scimv1.ReviewedByAnnotation: "rita", scimv1.ReviewedByGroupsAnnotation: "reviewers"}, "rita", 0, ""},
		{"too many groups", map[string]string{scimv1.ReviewedByAnnotation: "rita", scimv1.ReviewedByGroupsAnnotation: many}, "rita", maxReviewerGroups, "g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attesterOf(tc.annotations)
			if a.user != tc.user || len(a.groups) != tc.groups {
				t.Fatalf("attester %q with %d groups, want %q with %d", a.user, len(a.groups), tc.user, tc.groups)
			}
			if tc.groups > 0 && a.groups[0] != tc.first {
				t.Errorf("first group %q, want %q", a.groups[0], tc.first)
			}
		})
	}
}
