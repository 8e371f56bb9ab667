package workload

import (
	"encoding/json"
	"strings"
	"testing"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// annotationCase is a workload's scim.nhi.dev/* annotations and the identity spec they give.
type annotationCase struct {
	name    string
	targets string
	ann     map[string]string
	want    *scimv1.ServiceIdentitySpec
	invalid string // the error names this annotation; "" means valid
}

// annotationCases are shared with the envtest spec that has the API server accept every
// valid case's spec (workload_spec_test.go).
var annotationCases = func() []annotationCase {
	scimTarget := func(name string) scimv1.TargetReference {
		return scimv1.TargetReference{Kind: scimv1.KindScimTarget, Name: name}
	}
	cluster := func(name string) scimv1.TargetReference {
		return scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: name}
	}
	ttl := func(s string) *scimv1.Duration { d := scimv1.Duration(s); return &d }
	many := func(n int, prefix string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = prefix + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("0", i/26)
		}
		return strings.Join(items, ",")
	}
	acme := []scimv1.TargetReference{scimTarget("acme")}
	return []annotationCase{
		// targets
		{"one ScimTarget, every other field left to the API's defaults", "acme", nil,
			&scimv1.ServiceIdentitySpec{TargetRefs: acme}, ""},
		{"kinds, spaces and empty items", " acme , ClusterScimTarget/corp,,ScimTarget/ledger ,", nil,
			&scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{scimTarget("acme"), cluster("corp"), scimTarget("ledger")}}, ""},
		{"spaces around the slash", "ClusterScimTarget / corp", nil,
			&scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{cluster("corp")}}, ""},
		{"a target named twice counts once", "acme,ScimTarget/acme, acme,ClusterScimTarget/acme", nil,
			&scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{scimTarget("acme"), cluster("acme")}}, ""},
		{"32 targets", many(32, "t"), nil, &scimv1.ServiceIdentitySpec{TargetRefs: refsOf(many(32, "t"))}, ""},
		{"33 targets", many(33, "t"), nil, nil, scimv1.AnnotationTargets},
		{"empty", "", nil, nil, scimv1.AnnotationTargets},
		{"only commas and spaces", " , ,", nil, nil, scimv1.AnnotationTargets},
		{"unknown kind", "Secret/acme", nil, nil, scimv1.AnnotationTargets},
		{"kind in another case", "clusterscimtarget/corp", nil, nil, scimv1.AnnotationTargets},
		{"kind without a name", "ClusterScimTarget/", nil, nil, scimv1.AnnotationTargets},
		{"a path", "ScimTarget/a/b", nil, nil, scimv1.AnnotationTargets},
		{"a space inside a name", "ac me", nil, nil, scimv1.AnnotationTargets},
		{"not an object name (upper case)", "Acme", nil, nil, scimv1.AnnotationTargets},
		{"a name longer than 253", strings.Repeat("a", 254), nil, nil, scimv1.AnnotationTargets},

		// groups
		{"groups: spaces, empty items and duplicates", "acme", map[string]string{scimv1.AnnotationGroups: " readers, writers,,readers "},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme, Groups: []string{"readers", "writers"}}, ""},
		{"groups: names with spaces are kept whole", "acme", map[string]string{scimv1.AnnotationGroups: "Payments Writers"},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme, Groups: []string{"Payments Writers"}}, ""},
		{"groups: only commas", "acme", map[string]string{scimv1.AnnotationGroups: ", ,"},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme}, ""},
		{"64 groups", "acme", map[string]string{scimv1.AnnotationGroups: many(64, "g")},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme, Groups: strings.Split(many(64, "g"), ",")}, ""},
		{"65 groups", "acme", map[string]string{scimv1.AnnotationGroups: many(65, "g")}, nil, scimv1.AnnotationGroups},

		// owner
		{"owner", "acme", map[string]string{scimv1.AnnotationOwner: " payments-team@example.com "},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme, Owner: "payments-team@example.com"}, ""},
		{"owner: not an address", "acme", map[string]string{scimv1.AnnotationOwner: "payments-team"}, nil, scimv1.AnnotationOwner},
		{"owner: nothing before the @", "acme", map[string]string{scimv1.AnnotationOwner: "@example.com"}, nil, scimv1.AnnotationOwner},
		{"owner: nothing after the @", "acme", map[string]string{scimv1.AnnotationOwner: "team@"}, nil, scimv1.AnnotationOwner},
		{"owner: two @", "acme", map[string]string{scimv1.AnnotationOwner: "a@b@example.com"}, nil, scimv1.AnnotationOwner},
		{"owner: a space inside", "acme", map[string]string{scimv1.AnnotationOwner: "pay ments@example.com"}, nil, scimv1.AnnotationOwner},
		{"owner: a newline inside", "acme", map[string]string{scimv1.AnnotationOwner: "team\n@example.com"}, nil, scimv1.AnnotationOwner},
		{"owner: longer than 254", "acme", map[string]string{scimv1.AnnotationOwner: strings.Repeat("a", 250) + "@b.io"}, nil, scimv1.AnnotationOwner},

		// display-name
		{"display name", "acme", map[string]string{scimv1.AnnotationDisplayName: "  Fraud triage agent "},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme, DisplayName: "Fraud triage agent"}, ""},
		{"display name of 256 characters (multi-byte)", "acme", map[string]string{scimv1.AnnotationDisplayName: strings.Repeat("é", 256)},
			&scimv1.ServiceIdentitySpec{TargetRefs: acme, DisplayName: strings.Repeat("é", 256)}, ""},
		{"display name of 257 characters", "acme", map[string]string{scimv1.AnnotationDisplayName: strings.Repeat("a", 257)}, nil, scimv1.AnnotationDisplayName},

		// ttl
		{"ttl", "acme", map[string]string{scimv1.AnnotationTTL: " 24h "}, &scimv1.ServiceIdentitySpec{TargetRefs: acme, TTL: ttl("24h")}, ""},
		{"ttl with components", "acme", map[string]string{scimv1.AnnotationTTL: "1h30m"}, &scimv1.ServiceIdentitySpec{TargetRefs: acme, TTL: ttl("1h30m")}, ""},
		{"ttl zero", "acme", map[string]string{scimv1.AnnotationTTL: "0s"}, nil, scimv1.AnnotationTTL},
		{"ttl negative", "acme", map[string]string{scimv1.AnnotationTTL: "-1h"}, nil, scimv1.AnnotationTTL},
		{"ttl in days (not a Go duration)", "acme", map[string]string{scimv1.AnnotationTTL: "30d"}, nil, scimv1.AnnotationTTL},
		{"ttl without a unit", "acme", map[string]string{scimv1.AnnotationTTL: "3600"}, nil, scimv1.AnnotationTTL},
		{"ttl that Go parses and the API refuses", "acme", map[string]string{scimv1.AnnotationTTL: "+1h"}, nil, scimv1.AnnotationTTL},
		{"ttl longer than 32 characters", "acme", map[string]string{scimv1.AnnotationTTL: "1.000000001h1.000000001m1.000000001s"}, nil, scimv1.AnnotationTTL},

		// everything, and annotations that are not ours
		{"every annotation", "acme,ClusterScimTarget/corp", map[string]string{
			scimv1.AnnotationGroups: "readers", scimv1.AnnotationOwner: "o@example.com", scimv1.AnnotationDisplayName: "Bot", scimv1.AnnotationTTL: "720h",
			"scim.nhi.dev/user-name": "admin", "scim.nhi.dev/suspend": "true", "example.com/other": "x"},
			&scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{scimTarget("acme"), cluster("corp")}, Groups: []string{"readers"},
				Owner: "o@example.com", DisplayName: "Bot", TTL: ttl("720h")}, ""},
	}
}()

func TestSpecFromAnnotations(t *testing.T) {
	for _, tc := range annotationCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := specFromAnnotations(tc.targets, tc.ann)
			if tc.invalid != "" {
				if err == nil || !strings.Contains(err.Error(), "annotation "+tc.invalid) {
					t.Fatalf("want an error naming annotation %s, got spec %+v, error %v", tc.invalid, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if a, b := mustJSON(t, got), mustJSON(t, tc.want); a != b {
				t.Fatalf("spec:\n got %s\nwant %s", a, b)
			}
		})
	}
}

func refsOf(list string) []scimv1.TargetReference {
	var refs []scimv1.TargetReference
	for _, name := range strings.Split(list, ",") {
		refs = append(refs, scimv1.TargetReference{Kind: scimv1.KindScimTarget, Name: name})
	}
	return refs
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What the annotations cannot express survives their reconcile: the kill switch, a review
// interval, an explicit expiry (unless the annotations set a ttl), the defaulted userType.
func TestMergeSpec(t *testing.T) {
	at := scimv1.Timestamp("2027-01-01T00:00:00Z")
	ttl := scimv1.Duration("24h")
	current := scimv1.ServiceIdentitySpec{Suspend: true, UserType: "service", ExpiresAt: &at,
		Review: &scimv1.ReviewPolicy{}, Groups: []string{"old"}}
	got := mergeSpec(scimv1.ServiceIdentitySpec{Groups: []string{"new"}}, current)
	if !got.Suspend || got.UserType != "service" || got.ExpiresAt != &at || got.Review != current.Review || got.Groups[0] != "new" {
		t.Fatalf("merged: %+v", got)
	}
	if got := mergeSpec(scimv1.ServiceIdentitySpec{TTL: &ttl}, current); got.ExpiresAt != nil || got.TTL == nil {
		t.Fatalf("a ttl from the annotations replaces the expiry: %+v", got)
	}
}
