// Package chart checks the Helm chart (charts/scim-operator): it lints, it renders with every
// option on and off, the API server accepts the render (server-side dry-run on a real
// kube-apiserver), and it installs what config/default installs: the same CRDs, the same RBAC,
// the same admission policies.
package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/nhi-dev/scim-operator/test/controlplane"
)

var (
	allOn  = filepath.Join(chartDir, "ci", "all-on-values.yaml")
	allOff = filepath.Join(chartDir, "ci", "all-off-values.yaml")
)

func TestChartLintsStrictly(t *testing.T) {
	for _, args := range [][]string{nil, {"--values", allOn}, {"--values", allOff}, {"--kube-version", "1.30.0"}} {
		out, _, err := run(helm(t), append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte("1 chart(s) linted, 0 chart(s) failed")) {
			t.Fatalf("helm lint --strict %v:\n%s", args, out)
		}
		t.Logf("helm lint --strict %v:\n%s", args, out)
	}
}

// The chart ships config/crd/bases and config/prometheus/alerts.yaml as they are (hack/chart-sync.sh,
// run by make manifests, copies them).
func TestChartFilesAreCopiesOfConfig(t *testing.T) {
	sources, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(sources) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	copies, _ := filepath.Glob(filepath.Join(chartDir, "files", "crds", "*.yaml"))
	if len(copies) != len(sources) {
		t.Errorf("the chart has %d CRD files, config/crd/bases %d: run make manifests", len(copies), len(sources))
	}
	pairs := map[string]string{}
	for _, s := range sources {
		pairs[s] = filepath.Join(chartDir, "files", "crds", filepath.Base(s))
	}
	alerts := filepath.Join(root, "config", "prometheus", "alerts.yaml")
	if _, err := os.Stat(alerts); err == nil {
		pairs[alerts] = filepath.Join(chartDir, "files", "alerts.yaml")
	} else {
		t.Logf("no %s yet: the chart's files/alerts.yaml is a placeholder", alerts)
	}
	for src, cp := range pairs {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(cp)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s is not a copy of %s (%v): run make manifests", cp, src, err)
		}
	}
}

// As the README installs it, the chart installs what config/default installs: the same CRDs,
// the same RBAC (names aside) and the same admission policies.
func TestChartMatchesConfigDefault(t *testing.T) {
	chart := parse(t, mustRender(t, "--kube-version", "1.36.0"))
	kustomize := parse(t, kustomizeDefault(t))

	diff, err := compareRBAC(chart, kustomize)
	if err != nil {
		t.Fatal(err)
	}
	if diff != "" {
		t.Error(diff)
	} else {
		grants, _ := rbacGrants(chart)
		t.Logf("RBAC: the same %d (role kind or manager, scope, group, resource, verb) grants in both", len(grants))
	}

	if n := count(chart, "CustomResourceDefinition"); n != 3 {
		t.Errorf("the chart renders %d CRDs, want 3", n)
	}
	if d := compareObjects(chart, kustomize, "CustomResourceDefinition"); d != "" {
		t.Errorf("the chart's CRDs differ from config/default's:\n%s", d)
	}
	policies := []string{"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
	if d := compareObjects(chart, kustomize, policies...); d != "" {
		t.Errorf("the chart's admission policies differ from config/default's:\n%s", d)
	}
}

// The comparison sees a rule missing from the chart, a verb more, and a rule moved from the
// operator's namespace to the whole cluster.
func TestRBACComparisonCatchesADifference(t *testing.T) {
	kustomize := parse(t, kustomizeDefault(t))
	base := mustRender(t)
	for _, tc := range []struct {
		name, set, want string
	}{
		{"rule removed", "", "only config/default grants:\n  ClusterRole cluster-wide: create scim.nhi.dev/serviceidentities/*"},
		{"verb added", "list", "ClusterRole cluster-wide: list authentication.k8s.io/tokenreviews/*"},
		{"namespaced rule made cluster-wide", "cluster", "the manager cluster-wide: create core/secrets/*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chart := parse(t, base)
			mutate(t, chart, tc.set)
			diff, err := compareRBAC(chart, kustomize)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(diff, tc.want) {
				t.Fatalf("the comparison did not report %q; it said:\n%s", tc.want, diff)
			}
		})
	}
}

// mutate breaks the chart's RBAC in one of three ways.
func mutate(t *testing.T, objs []*unstructured.Unstructured, how string) {
	t.Helper()
	switch how {
	case "":
		// Drop "create" from the serviceidentities rule of the manager ClusterRole.
		role := find(objs, "ClusterRole", release+"-manager-role")
		rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
		for _, r := range rules {
			m := r.(map[string]any)
			if reflect.DeepEqual(m["resources"], []any{"serviceidentities"}) {
				m["verbs"] = slices.DeleteFunc(m["verbs"].([]any), func(v any) bool { return v == "create" })
			}
		}
		_ = unstructured.SetNestedSlice(role.Object, rules, "rules")
	case "list":
		role := find(objs, "ClusterRole", release+"-metrics-auth-role")
		rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
		rules[0].(map[string]any)["verbs"] = []any{"create", "list"}
		_ = unstructured.SetNestedSlice(role.Object, rules, "rules")
	case "cluster":
		// Bind the namespaced manager Role's rules through a ClusterRole instead.
		for _, o := range objs {
			if o.GetName() == release+"-manager-role" && o.GetKind() == "Role" {
				o.SetKind("ClusterRole")
				o.SetNamespace("")
			}
			if o.GetName() == release+"-manager-rolebinding" && o.GetKind() == "RoleBinding" {
				o.SetKind("ClusterRoleBinding")
				o.SetNamespace("")
				_ = unstructured.SetNestedField(o.Object, "ClusterRole", "roleRef", "kind")
			}
		}
	}
}

// Each values set renders what it says, and the API server accepts the render.
func TestChartInstallsOnKubeAPIServer(t *testing.T) {
	a := assets(t)
	cp, err := controlplane.Start(controlplane.Options{
		Assets:  a,
		Dir:     t.TempDir(),
		CRDDirs: []string{prometheusOperatorCRDs(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	kubectl := func(stdin []byte, args ...string) (string, error) {
		cmd := cp.Kubectl(t.Context(), args...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The release namespace warns of pods that break the restricted Pod Security Standard.
	for _, ns := range []string{namespace, "scim-operator-secrets"} {
		if out, err := kubectl(nil, "create", "namespace", ns); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if out, err := kubectl(nil, "label", "namespace", ns, "pod-security.kubernetes.io/warn=restricted"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	out, err := kubectl(nil, "version", "-o", "json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var version struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &version); err != nil {
		t.Fatal(err)
	}
	server := version.ServerVersion.GitVersion

	dryRun := func(t *testing.T, manifest []byte) string {
		t.Helper()
		out, err := kubectl(manifest, "apply", "--server-side", "--dry-run=server", "--field-manager=helm", "-f", "-")
		if err != nil {
			t.Fatalf("kubectl apply --server-side --dry-run=server: %v\n%s", err, out)
		}
		return out
	}

	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{
		{"default values", []string{"--kube-version", server}, checkDefaults},
		{"Kubernetes 1.35: no MutatingAdmissionPolicy", []string{"--kube-version", "1.35.0"}, func(t *testing.T, objs []*unstructured.Unstructured) {
			if count(objs, "MutatingAdmissionPolicy")+count(objs, "MutatingAdmissionPolicyBinding") != 0 {
				t.Error("a MutatingAdmissionPolicy rendered for Kubernetes 1.35")
			}
			if n := count(objs, "ValidatingAdmissionPolicy"); n != 3 {
				t.Errorf("%d ValidatingAdmissionPolicies rendered for Kubernetes 1.35, want 3", n)
			}
		}},
		{"every option on", []string{"--kube-version", server, "--values", allOn}, checkAllOn},
		{"every option off", []string{"--kube-version", server, "--values", allOff}, checkAllOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifest := mustRender(t, tc.args...)
			objs := parse(t, manifest)
			tc.check(t, objs)
			out := dryRun(t, manifest)
			if strings.Contains(out, "would violate PodSecurity") {
				t.Errorf("the manager breaks the restricted Pod Security Standard:\n%s", out)
			}
			t.Logf("%d objects accepted by kube-apiserver %s (server-side dry-run):\n%s", len(objs), server, out)
		})
	}

	// Applied for real (as Flux and Argo CD apply, server-side), the CRDs keep their rules: a
	// ClusterScimTarget may not send credentials over plain http.
	t.Run("the CRDs apply server-side and keep their validation rules", func(t *testing.T) {
		if out, err := kubectl(mustRender(t, "--show-only", "templates/crds.yaml"), "apply", "--server-side", "--field-manager=helm", "-f", "-"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if out, err := kubectl(nil, "wait", "--for=condition=Established", "crd/clusterscimtargets.scim.nhi.dev", "--timeout=30s"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		target := []byte(`{"apiVersion": "scim.nhi.dev/v1alpha1", "kind": "ClusterScimTarget", "metadata": {"name": "plain"},
			"spec": {"endpoint": "http://app.example.com/scim/v2", "auth": {"bearerToken": {"secretKeyRef": {"name": "s", "key": "token"}}}}}`)
		out, err := kubectl(target, "apply", "--server-side", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(out, "endpoint must use https:// unless allowInsecureHTTP is true") {
			t.Fatalf("a ClusterScimTarget with an http:// endpoint: %v\n%s", err, out)
		}
	})

	// The Pod Security check above can fail: a manager allowed to escalate privileges is reported.
	t.Run("a privilege escalation is reported", func(t *testing.T) {
		out := dryRun(t, mustRender(t, "--set", "securityContext.allowPrivilegeEscalation=true"))
		if !strings.Contains(out, "would violate PodSecurity") || !strings.Contains(out, "allowPrivilegeEscalation") {
			t.Fatalf("no Pod Security warning for allowPrivilegeEscalation=true:\n%s", out)
		}
	})

	t.Run("more than one replica needs leader election", func(t *testing.T) {
		_, err := render(t, "--set", "replicas=2", "--set", "leaderElection.enabled=false")
		if err == nil || !strings.Contains(err.Error(), "replicas > 1 needs leaderElection.enabled") {
			t.Fatalf("helm template with 2 replicas and no leader election: %v", err)
		}
	})
}

func managerContainer(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	dep := find(objs, "Deployment", "")
	if dep == nil {
		t.Fatal("no Deployment rendered")
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	return containers[0].(map[string]any)
}

func args(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, a := range managerContainer(t, objs)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func env(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, e := range managerContainer(t, objs)["env"].([]any) {
		m := e.(map[string]any)
		if v, ok := m["value"]; ok {
			out[m["name"].(string)] = v
		} else {
			out[m["name"].(string)] = m["valueFrom"]
		}
	}
	return out
}

func wantArgs(t *testing.T, objs []*unstructured.Unstructured, want ...string) {
	t.Helper()
	got := args(t, objs)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("the manager's args %q lack %q", got, w)
		}
	}
}

func checkDefaults(t *testing.T, objs []*unstructured.Unstructured) {
	wantArgs(t, objs, "--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081",
		"--cluster-resource-namespace="+namespace)
	for _, a := range args(t, objs) {
		if strings.HasPrefix(a, "--watch-namespaces") || strings.HasPrefix(a, "--metrics-secure") {
			t.Errorf("unexpected default arg %q", a)
		}
	}
	e := env(t, objs)
	if e["GOMEMLIMIT"] != "$(MEMORY_LIMIT_MIB)000000" {
		t.Errorf("GOMEMLIMIT = %v", e["GOMEMLIMIT"])
	}
	ref, _, _ := unstructured.NestedMap(e, "MEMORY_LIMIT_MIB", "resourceFieldRef")
	if ref["resource"] != "limits.memory" || ref["divisor"] != "1Mi" {
		t.Errorf("MEMORY_LIMIT_MIB comes from %v, want limits.memory in Mi", ref)
	}
	sc, _, _ := unstructured.NestedMap(managerContainer(t, objs), "securityContext")
	want := map[string]any{
		"runAsNonRoot": true, "runAsUser": int64(65532), "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
		"capabilities": map[string]any{"drop": []any{"ALL"}}, "seccompProfile": map[string]any{"type": "RuntimeDefault"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(sc[k], v) {
			t.Errorf("securityContext.%s = %v, want %v", k, sc[k], v)
		}
	}
	for _, kind := range []string{"MutatingAdmissionPolicy", "Service", "ServiceAccount"} {
		if find(objs, kind, "") == nil {
			t.Errorf("no %s rendered by default", kind)
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} {
		if find(objs, kind, "") != nil {
			t.Errorf("%s rendered by default", kind)
		}
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" && o.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s is not kept on uninstall", o.GetName())
		}
	}
}

func checkAllOn(t *testing.T, objs []*unstructured.Unstructured) {
	wantArgs(t, objs, "--leader-elect", "--metrics-bind-address=:9443", "--metrics-cert-path=/etc/scim-operator/metrics-certs",
		"--cluster-resource-namespace=scim-operator-secrets", "--watch-namespaces=team-a,team-b", "--cluster-id=prod-eu-1",
		"--namespaced-target-allowed-cidrs=10.20.0.0/16,10.21.0.0/16", "--namespaced-target-denied-cidrs=", "--zap-log-level=debug")
	dep := find(objs, "Deployment", "scim-controller-manager")
	if dep == nil {
		t.Fatal("no Deployment scim-controller-manager (fullnameOverride)")
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas = %d", r)
	}
	if img := managerContainer(t, objs)["image"]; !strings.HasPrefix(img.(string), "ghcr.io/nhi-dev/scim-operator@sha256:") {
		t.Errorf("image %v does not use the digest", img)
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "MutatingAdmissionPolicy"} {
		if find(objs, kind, "") == nil {
			t.Errorf("no %s rendered", kind)
		}
	}
	// The Roles go to the cluster-resource namespace, where the snapshots and the lease live.
	for _, o := range objs {
		if (o.GetKind() == "Role" || o.GetKind() == "RoleBinding") && o.GetNamespace() != "scim-operator-secrets" {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	binding := find(objs, "ClusterRoleBinding", "scim-metrics-reader-rolebinding")
	if binding == nil {
		t.Error("metrics.readerSubjects bound nothing")
	}
	sw, _ := json.Marshal(find(objs, "ValidatingAdmissionPolicy", "scim-status-writers").Object)
	if !bytes.Contains(sw, []byte("system:serviceaccount:"+namespace+":scim-manager")) {
		t.Errorf("status-writers does not name the manager's service account: %s", sw)
	}
	sa, _ := json.Marshal(find(objs, "ValidatingAdmissionPolicy", "scim-secret-access").Object)
	if !bytes.Contains(sa, []byte("'scim-operator-secrets'")) {
		t.Errorf("secret-access does not name the cluster-resource namespace: %s", sa)
	}
	// The PrometheusRule carries files/alerts.yaml's groups as they are.
	rule := find(objs, "PrometheusRule", "")
	alerts, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(alerts, &file); err != nil {
		t.Fatal(err)
	}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	if len(groups) == 0 || !reflect.DeepEqual(normalise(t, groups), normalise(t, file["groups"])) {
		t.Errorf("the PrometheusRule's groups differ from files/alerts.yaml")
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" && o.GetAnnotations()["helm.sh/resource-policy"] != "" {
			t.Errorf("CRD %s is kept although crds.keep is false", o.GetName())
		}
	}
}

func checkAllOff(t *testing.T, objs []*unstructured.Unstructured) {
	for _, kind := range []string{"CustomResourceDefinition", "MutatingAdmissionPolicy", "ValidatingAdmissionPolicy", "Service", "ServiceAccount", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} {
		if find(objs, kind, "") != nil {
			t.Errorf("%s rendered with every option off", kind)
		}
	}
	wantArgs(t, objs, "--metrics-bind-address=0")
	if slices.Contains(args(t, objs), "--leader-elect") {
		t.Error("--leader-elect with leaderElection.enabled=false")
	}
	if _, ok := env(t, objs)["GOMEMLIMIT"]; ok {
		t.Error("GOMEMLIMIT with goMemLimit.enabled=false")
	}
	dep := find(objs, "Deployment", "")
	if sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName"); sa != "default" {
		t.Errorf("serviceAccountName = %q, want the existing one", sa)
	}
}

// normalise round-trips v through JSON, so numbers compare alike.
func normalise(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every value of values.yaml is in the chart's README table (or a value above it is).
func TestChartReadmeDocumentsEveryValue(t *testing.T) {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(values, &m); err != nil {
		t.Fatal(err)
	}
	var leaves []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			for k, e := range sub {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
			return
		}
		leaves = append(leaves, prefix)
	}
	walk("", m)
	for _, leaf := range leaves {
		documented := false
		parts := strings.Split(leaf, ".")
		for i := range parts {
			if bytes.Contains(readme, []byte("`"+strings.Join(parts[:i+1], ".")+"`")) {
				documented = true
			}
		}
		if !documented {
			t.Errorf("value %s is not in charts/scim-operator/README.md", leaf)
		}
	}
	t.Logf("%d values, each documented", len(leaves))
}
