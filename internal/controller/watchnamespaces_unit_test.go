package controller

import (
	"slices"
	"testing"

	ctrl "sigs.k8s.io/controller-runtime"
)

func TestParseNamespaces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{" , ", nil, false},
		{"payments", []string{"payments"}, false},
		{"payments, billing,payments,", []string{"payments", "billing"}, false},
		{"Payments", nil, true},
		{"payments,bad_name", nil, true},
	} {
		got, err := ParseNamespaces(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("ParseNamespaces(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestWatchNamespacesNoneKeepsEveryNamespace(t *testing.T) {
	opts := ctrl.Options{}
	ConfigureManager(&opts)
	WatchNamespaces(&opts, nil, "scim-operator-system")
	if opts.Cache.DefaultNamespaces != nil {
		t.Fatalf("no --watch-namespaces restricted the cache to %v", opts.Cache.DefaultNamespaces)
	}
}

// No --watch-namespaces watches every namespace; with it, the cluster-resource namespace is
// watched too.
func TestWatchedSet(t *testing.T) {
	if watchedSet(Config{}) != nil {
		t.Fatal("no --watch-namespaces should watch every namespace")
	}
	w := watchedSet(Config{WatchNamespaces: []string{"team-a"}, ClusterResourceNamespace: "ops"})
	for _, ns := range []string{"team-a", "ops"} {
		if !w.Has(ns) {
			t.Fatalf("%s is not watched", ns)
		}
	}
}
