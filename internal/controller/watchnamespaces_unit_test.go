package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// A namespace outside --watch-namespaces is not looked up in the cache (which has nothing of
// it and would log an error at every label change); no flag watches every namespace.
func TestIdentitiesInUnwatchedNamespace(t *testing.T) {
	if watchedSet(Config{}) != nil {
		t.Fatal("no --watch-namespaces should watch every namespace")
	}
	r := &ServiceIdentityReconciler{watched: watchedSet(Config{WatchNamespaces: []string{"team-a"}, ClusterResourceNamespace: "ops"})}
	for _, ns := range []string{"team-a", "ops"} {
		if !r.watched.Has(ns) {
			t.Fatalf("%s is watched", ns)
		}
	}
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}
	if reqs := r.identitiesInNamespace(t.Context(), other); reqs != nil { // r has no client: a lookup would panic
		t.Fatalf("requests for an unwatched namespace: %v", reqs)
	}
}
