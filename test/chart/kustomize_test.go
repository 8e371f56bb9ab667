package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// kustomizeOverlay renders base (config/default, config/no-admission-policy) the way a user
// installs it elsewhere: an overlay of their own, outside the repository, that sets another
// namespace and namePrefix.
func kustomizeOverlay(t *testing.T, base, ns, prefix string) []*unstructured.Unstructured {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(filepath.Join(root, "config", base))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, abs) // kustomize refuses absolute bases
	if err != nil {
		t.Fatal(err)
	}
	k := "namespace: " + ns + "\nnamePrefix: " + prefix + "\nresources:\n  - " + rel + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(filepath.Join(assets(t), "kubectl"), "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

// An install into another namespace, or under another namePrefix, gets admission policies
// that name that install's service account and namespace: status-writers lets the operator
// (and only it) write status, secret-access checks a ClusterScimTarget's Secrets where the
// operator reads them. Were they left naming scim-operator-system, the operator's own status
// writes would be refused and ClusterScimTarget authors checked against the wrong namespace.
func TestConfigDefaultPoliciesFollowTheInstall(t *testing.T) {
	const ns, prefix = "identity-ops", "acme-"
	for _, base := range []string{"default", "no-admission-policy"} {
		t.Run(base, func(t *testing.T) {
			objs := kustomizeOverlay(t, base, ns, prefix)
			dep := find(objs, "Deployment", "")
			if dep == nil || dep.GetNamespace() != ns {
				t.Fatalf("the overlay did not move the Deployment to %s", ns)
			}
			sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
			if !strings.HasPrefix(sa, prefix) {
				t.Fatalf("the overlay did not prefix the service account: %q", sa)
			}
			policy := func(name string) string {
				t.Helper()
				p := find(objs, "ValidatingAdmissionPolicy", prefix+"scim-operator-"+name)
				if p == nil {
					t.Fatalf("no ValidatingAdmissionPolicy %s%s", prefix, name)
				}
				b, _ := json.Marshal(p.Object)
				return string(b)
			}
			if sw, want := policy("status-writers"), "'system:serviceaccount:"+ns+":"+sa+"'"; !strings.Contains(sw, want) {
				t.Errorf("status-writers does not name the operator's service account %s: %s", want, sw)
			}
			// The operator relies on the creation stamps only where the policy guarding them is
			// installed, and the policy lets that operator (and no one else) write them.
			args, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			guarded := strings.Contains(fmt.Sprint(args), "--creation-stamps-guarded")
			hasPolicy := find(objs, "ValidatingAdmissionPolicy", prefix+"scim-operator-creation-stamps") != nil
			if guarded != hasPolicy || guarded != (base == "default") {
				t.Errorf("--creation-stamps-guarded %v with the creation-stamps policy installed %v", guarded, hasPolicy)
			}
			if hasPolicy {
				if cs, want := policy("creation-stamps"), "'system:serviceaccount:"+ns+":"+sa+"'"; !strings.Contains(cs, want) {
					t.Errorf("creation-stamps does not name the operator's service account %s: %s", want, cs)
				}
			}
			// The cluster-resource namespace is the operator's own (--cluster-resource-namespace
			// defaults to POD_NAMESPACE).
			if sa := policy("secret-access"); !strings.Contains(sa, `"expression":"'`+ns+`'","name":"clusterResourceNamespace"`) {
				t.Errorf("secret-access does not check ClusterScimTarget Secrets in %s: %s", ns, sa)
			}
			for _, o := range objs {
				if !strings.HasPrefix(o.GroupVersionKind().Group, "admissionregistration.k8s.io") {
					continue
				}
				b, _ := json.Marshal(o.Object)
				for _, stale := range []string{"scim-operator-system", "$("} {
					if strings.Contains(string(b), stale) {
						t.Errorf("%s %s still carries %q: %s", o.GetKind(), o.GetName(), stale, b)
					}
				}
			}
		})
	}
}

// notes are the release notes `helm install` prints, with values args.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := run(helm(t), append([]string{"install", release, chartDir, "--namespace", namespace, "--dry-run=client"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	_, n, ok := strings.Cut(string(out), "NOTES:\n")
	if !ok {
		t.Fatalf("no NOTES in:\n%s", out)
	}
	return n
}

// The release notes say what the cluster-resource namespace holds, and warn when it is one
// that others share.
func TestNotesWarnAboutTheClusterResourceNamespace(t *testing.T) {
	if n := notes(t); !strings.Contains(n, "holds the SCIM credentials of every ClusterScimTarget") || strings.Contains(n, "WARNING") {
		t.Errorf("with the release namespace, the notes should say what it holds and not warn:\n%s", n)
	}
	for _, args := range [][]string{
		{"--set", "clusterResourceNamespace=default"},
		{"--set", "clusterResourceNamespace=kube-system"},
		{"--set", "clusterResourceNamespace=payments", "--set", "watchNamespaces={payments,billing}"},
	} {
		if n := notes(t, args...); !strings.Contains(n, "WARNING: clusterResourceNamespace is") {
			t.Errorf("%v: no warning about a shared cluster-resource namespace:\n%s", args, n)
		}
	}
}

// The chart starts the operator with --creation-stamps-guarded exactly when it installs the
// creation-stamps policies and status-writers.
func TestChartGuardsCreationStampsWithTheirPolicies(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--kube-version", "1.36.0"}, true},
		{[]string{"--kube-version", "1.35.0"}, false}, // no MutatingAdmissionPolicy v1
		{[]string{"--kube-version", "1.36.0", "--set", "admissionPolicies.creationStamps=false"}, false},
		{[]string{"--kube-version", "1.36.0", "--set", "admissionPolicies.statusWriters=false"}, false},
		{[]string{"--kube-version", "1.30.0", "--set", "admissionPolicies.creationStamps=true"}, true},
	} {
		objs := parse(t, mustRender(t, c.args...))
		containers, _, _ := unstructured.NestedSlice(find(objs, "Deployment", "").Object, "spec", "template", "spec", "containers")
		guarded := strings.Contains(fmt.Sprint(containers), "--creation-stamps-guarded")
		policy := false
		for _, o := range objs {
			policy = policy || (o.GetKind() == "ValidatingAdmissionPolicy" && strings.HasSuffix(o.GetName(), "creation-stamps"))
		}
		if guarded != c.want {
			t.Errorf("%v: --creation-stamps-guarded %v, want %v", c.args, guarded, c.want)
		}
		if c.want && !policy {
			t.Errorf("%v: guarded without the creation-stamps policy", c.args)
		}
	}
}
