package controller

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// ParseNamespaces parses --watch-namespaces: a comma-separated list of namespace names, each
// once; "" is every namespace (nil).
func ParseNamespaces(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		ns := strings.TrimSpace(f)
		if ns == "" || seen[ns] {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
		}
		seen[ns] = true
		out = append(out, ns)
	}
	return out, nil
}

// watchedSet is the set of namespaces the cache holds, nil when it holds every namespace.
func watchedSet(cfg Config) sets.Set[string] {
	if len(cfg.WatchNamespaces) == 0 {
		return nil
	}
	return sets.New(append(slices.Clone(cfg.WatchNamespaces), cfg.ClusterResourceNamespace)...)
}

// WatchNamespaces restricts the manager's cache, and so what the operator watches and
// reconciles, to the given namespaces plus the cluster-resource namespace (where the Secrets of
// ClusterScimTargets, the credential snapshots and the leader lease live); none leaves it
// watching every namespace. Cluster-scoped kinds (ClusterScimTarget, Namespace) stay
// cluster-wide. Secrets are in no cache, whatever the namespaces (ConfigureManager): they are
// got by name.
func WatchNamespaces(o *ctrl.Options, namespaces []string, clusterResourceNamespace string) {
	if len(namespaces) == 0 {
		return
	}
	o.Cache.DefaultNamespaces = map[string]cache.Config{}
	for _, ns := range append(slices.Clone(namespaces), clusterResourceNamespace) {
		if ns != "" {
			o.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	}
}
