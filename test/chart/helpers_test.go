package chart

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	root     = "../.."
	chartDir = "../../charts/scim-operator"
	// The README's install: helm install scim-operator charts/scim-operator -n scim-operator-system.
	release   = "scim-operator"
	namespace = "scim-operator-system"
	// The prometheus-operator API whose types give the ServiceMonitor and PrometheusRule CRDs
	// the dry-run validates against.
	prometheusOperatorAPI = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@v0.95.2"
)

func assets(t *testing.T) string {
	t.Helper()
	a := os.Getenv("KUBEBUILDER_ASSETS")
	if a == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test` or `make chart-test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-bins.sh)")
	}
	return a
}

var helmPath = sync.OnceValues(func() (string, error) {
	if h := os.Getenv("HELM"); h != "" {
		return h, nil
	}
	out, err := exec.Command(filepath.Join(root, "hack", "helm.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("hack/helm.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
})

func helm(t *testing.T) string {
	t.Helper()
	h, err := helmPath()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs a command and returns its stdout and stderr; on failure the error carries both.
func run(name string, args ...string) ([]byte, []byte, error) { return runIn("", name, args...) }

func runIn(dir, name string, args ...string) ([]byte, []byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), stderr.Bytes(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}

// render is `helm template` of the chart as the README installs it, plus args (values files,
// --set, --kube-version).
func render(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	out, _, err := run(helm(t), append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	return out, err
}

func mustRender(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kustomizeDefault is what `kubectl apply -k config/default` installs.
func kustomizeDefault(t *testing.T) []byte {
	t.Helper()
	out, _, err := run(filepath.Join(assets(t), "kubectl"), "kustomize", filepath.Join(root, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func parse(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("parsing a rendered manifest: %v", err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 || string(raw.Raw) == "null" {
			continue
		}
		o := &unstructured.Unstructured{} // integers stay int64
		if err := o.UnmarshalJSON(raw.Raw); err != nil {
			t.Fatalf("parsing a rendered manifest: %v\n%s", err, raw.Raw)
		}
		objs = append(objs, o)
	}
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func count(objs []*unstructured.Unstructured, kind string) int {
	n := 0
	for _, o := range objs {
		if o.GetKind() == kind {
			n++
		}
	}
	return n
}

// rbacGrants describes the RBAC of a render without the objects' names: what the manager's
// service account (the Deployment's) may do, cluster-wide and in each namespace, and the rules
// of every ClusterRole and of the Roles of each namespace, bound or not (metrics-reader is bound
// by the user). One string per (scope, API group, resource, resource name, verb) or
// (scope, non-resource URL, verb); the Deployment's namespace is written "the operator's
// namespace", so renders into another namespace compare equal.
func rbacGrants(objs []*unstructured.Unstructured) (map[string]bool, error) {
	dep := find(objs, "Deployment", "")
	if dep == nil {
		return nil, errors.New("no Deployment in the render")
	}
	operatorNS := dep.GetNamespace()
	sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
	scope := func(ns string) string {
		switch ns {
		case "":
			return "cluster-wide"
		case operatorNS:
			return "in the operator's namespace"
		}
		return "in namespace " + ns
	}
	roles := map[string][]rbacv1.PolicyRule{} // kind/namespace/name
	grants := map[string]bool{}
	add := func(prefix string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, verb := range r.Verbs {
				for _, url := range r.NonResourceURLs {
					grants[fmt.Sprintf("%s: %s %s", prefix, verb, url)] = true
				}
				for _, group := range r.APIGroups {
					for _, res := range r.Resources {
						names := r.ResourceNames
						if len(names) == 0 {
							names = []string{"*"}
						}
						for _, n := range names {
							grants[fmt.Sprintf("%s: %s %s/%s/%s", prefix, verb, cmpOr(group, "core"), res, n)] = true
						}
					}
				}
			}
		}
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "Role":
			var role rbacv1.ClusterRole // Role has the same rules field
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			roles[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = role.Rules
			add(o.GetKind()+" "+scope(o.GetNamespace()), role.Rules)
		}
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding // ClusterRoleBinding has the same fields
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
				return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == operatorNS
			}) {
				continue
			}
			ns := ""
			if b.RoleRef.Kind == "Role" {
				ns = o.GetNamespace()
			}
			rules, ok := roles[b.RoleRef.Kind+"/"+ns+"/"+b.RoleRef.Name]
			if !ok {
				grants[fmt.Sprintf("%s %s refers to a missing %s %s", o.GetKind(), o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)] = true
			}
			add("the manager "+scope(o.GetNamespace()), rules)
		}
	}
	return grants, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// setDiff lists what only a has and what only b has, sorted.
func setDiff(a, b map[string]bool) (onlyA, onlyB []string) {
	for k := range a {
		if !b[k] {
			onlyA = append(onlyA, k)
		}
	}
	for k := range b {
		if !a[k] {
			onlyB = append(onlyB, k)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

// compareRBAC says how the chart's RBAC differs from config/default's; "" if it does not.
func compareRBAC(chart, kustomize []*unstructured.Unstructured) (string, error) {
	c, err := rbacGrants(chart)
	if err != nil {
		return "", fmt.Errorf("chart: %w", err)
	}
	k, err := rbacGrants(kustomize)
	if err != nil {
		return "", fmt.Errorf("config/default: %w", err)
	}
	onlyChart, onlyKustomize := setDiff(c, k)
	if len(onlyChart)+len(onlyKustomize) == 0 {
		return "", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the chart and config/default grant different RBAC\nonly the chart grants:\n")
	for _, g := range onlyChart {
		fmt.Fprintf(&b, "  %s\n", g)
	}
	fmt.Fprintf(&b, "only config/default grants:\n")
	for _, g := range onlyKustomize {
		fmt.Fprintf(&b, "  %s\n", g)
	}
	return b.String(), nil
}

// comparable drops what the chart adds to an object it otherwise ships as config/default does:
// its labels and Helm's keep annotation. In strings, the blanks around a line break count as
// one line break: kustomize's YAML parser reads a folded scalar (CEL in config/admission) with a
// more-indented line as an extra empty line, where Helm's and the API server's read none.
func comparable(o *unstructured.Unstructured) any {
	c := o.DeepCopy()
	c.SetLabels(nil)
	if a := c.GetAnnotations(); a != nil {
		delete(a, "helm.sh/resource-policy")
		if len(a) == 0 {
			a = nil
		}
		c.SetAnnotations(a)
	}
	return foldLineBreaks(c.Object)
}

var lineBreak = regexp.MustCompile(`[ \t]*\n\s*`)

func foldLineBreaks(v any) any {
	switch x := v.(type) {
	case string:
		return lineBreak.ReplaceAllString(x, "\n")
	case map[string]any:
		for k, e := range x {
			x[k] = foldLineBreaks(e)
		}
	case []any:
		for i, e := range x {
			x[i] = foldLineBreaks(e)
		}
	}
	return v
}

// diffPaths lists the paths at which a and b differ (at most 20).
func diffPaths(a, b any, path string, out *[]string) {
	if len(*out) >= 20 {
		return
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diffPaths(am[k], bm[k], path+"."+k, out)
		}
		return
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		for i := range al {
			diffPaths(al[i], bl[i], fmt.Sprintf("%s[%d]", path, i), out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		aj, _ := json.Marshal(a)
		bj, _ := json.Marshal(b)
		*out = append(*out, fmt.Sprintf("%s: chart %.200s, config/default %.200s", path, aj, bj))
	}
}

// compareObjects says how the chart's objects of the given kinds differ from config/default's,
// matched by kind and name; "" if they do not.
func compareObjects(chart, kustomize []*unstructured.Unstructured, kinds ...string) string {
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			if slices.Contains(kinds, o.GetKind()) {
				m[o.GetKind()+" "+o.GetName()] = o
			}
		}
		return m
	}
	c, k := index(chart), index(kustomize)
	var problems []string
	for key, ko := range k {
		co, ok := c[key]
		if !ok {
			problems = append(problems, "only config/default has "+key)
			continue
		}
		var paths []string
		diffPaths(comparable(co), comparable(ko), "", &paths)
		for _, p := range paths {
			problems = append(problems, key+" differs at "+p)
		}
	}
	for key := range c {
		if _, ok := k[key]; !ok {
			problems = append(problems, "only the chart has "+key)
		}
	}
	sort.Strings(problems)
	return strings.Join(problems, "\n")
}

// prometheusOperatorCRDs generates the ServiceMonitor and PrometheusRule CRDs from the
// prometheus-operator's API types (a Go module) with the project's controller-gen, so the dry-run
// checks the chart's ServiceMonitor and PrometheusRule against their real schemas. It returns the
// directory holding them.
func prometheusOperatorCRDs(t *testing.T) string {
	t.Helper()
	dl := exec.Command("go", "mod", "download", "-json", prometheusOperatorAPI)
	dl.Dir = t.TempDir() // outside the project's module: its go.mod stays as it is
	out, err := dl.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s", prometheusOperatorAPI, err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", prometheusOperatorAPI, err, mod.Error)
	}
	cg := exec.Command("go", "tool", "-n", "controller-gen")
	cg.Dir = root
	out, err = cg.Output()
	if err != nil {
		t.Fatalf("go tool -n controller-gen: %v", err)
	}
	all := t.TempDir()
	if _, _, err := runIn(mod.Dir, strings.TrimSpace(string(out)), "crd:maxDescLen=0", "paths=./v1/...", "output:crd:dir="+all); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		b, err := os.ReadFile(filepath.Join(all, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
