package governance

import (
	"fmt"
	"strings"
	"testing"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

func TestOwnerChecksAreBounded(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	o := &ownerChecks{size: 3}
	for i := range 10 { // a tenant changing spec.owner again and again
		o.put(fmt.Sprintf("owner-%d", i), ownerCheck{state: scimv1.OwnerActive, at: now})
	}
	if n := o.entries().Len(); n != 3 {
		t.Fatalf("%d answers cached, want the cap 3", n)
	}
	if _, ok := o.get("owner-0", now, time.Hour); ok {
		t.Error("the least recently used answer is still cached")
	}
	if _, ok := o.get("owner-9", now, time.Hour); !ok {
		t.Error("the newest answer is not cached")
	}
	if _, ok := o.get("owner-9", now.Add(time.Hour), time.Hour); ok {
		t.Error("an answer as old as its ttl is used")
	}
	if n := o.entries().Len(); n != 2 {
		t.Errorf("an expired answer stays cached: %d entries", n)
	}

	var zero ownerChecks // the reconciler's field: ready to use, at the default cap
	zero.put("k", ownerCheck{at: now})
	if _, ok := zero.get("k", now, time.Minute); !ok || zero.size != ownerCacheSize {
		t.Errorf("zero value: cached %v, size %d", ok, zero.size)
	}
}

func TestReferenceableOwnerID(t *testing.T) {
	for id, want := range map[string]string{
		"2819c223-7f76-453a-919d-413861904646": "2819c223-7f76-453a-919d-413861904646",
		"user 1":                               "user 1",
		"../admin":                             "",
		"a?b":                                  "",
		"a#b":                                  "",
		"bad\x1b[2J":                           "",
		"bad\xff":                              "",
		"..":                                   "",
		"rlo\u202eexe":                         "",
		strings.Repeat("x", 257):               "",
	} {
		if got := referenceable(id); got != want {
			t.Errorf("referenceable(%q) = %q, want %q", id, got, want)
		}
	}
}
