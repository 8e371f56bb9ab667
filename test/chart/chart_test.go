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

	if n := count(chart, "CustomResourceDefinition"); n != 4 {
		t.Errorf("the chart renders %d CRDs, want 4", n)
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
		manifest = withoutUnservedKinds(t, manifest)
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

	// A single replica still installs: leader election on, and a budget that lets a drain
	// evict the one pod (minAvailable: 1 would hold every drain).
	t.Run("a single replica", func(t *testing.T) {
		manifest := mustRender(t, "--kube-version", server, "--set", "replicas=1")
		objs := parse(t, manifest)
		if r, _, _ := unstructured.NestedInt64(find(objs, "Deployment", "").Object, "spec", "replicas"); r != 1 {
			t.Errorf("replicas = %d, want 1", r)
		}
		wantArgs(t, objs, "--leader-elect")
		pdb := find(objs, "PodDisruptionBudget", "")
		if pdb == nil {
			t.Fatal("no PodDisruptionBudget with replicas=1")
		}
		if spec, _, _ := unstructured.NestedMap(pdb.Object, "spec"); spec["maxUnavailable"] != int64(1) || spec["minAvailable"] != nil {
			t.Errorf("with one replica the budget must let a drain evict it: %v", spec)
		}
		dryRun(t, manifest)
	})

	t.Run("NetworkPolicy", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			args  []string
			check func(t *testing.T, np *unstructured.Unstructured)
		}{
			{"metrics from monitoring, egress open", []string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.metrics.namespaces={monitoring}",
				"--set", "networkPolicy.metrics.podLabels.app\\.kubernetes\\.io/name=prometheus"}, checkNetworkPolicyOpenEgress},
			{"nobody may scrape", []string{"--set", "networkPolicy.enabled=true"}, func(t *testing.T, np *unstructured.Unstructured) {
				ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
				if len(ingress) != 1 || !reflect.DeepEqual(ingress[0], map[string]any{"ports": []any{map[string]any{"port": int64(8081), "protocol": "TCP"}}}) {
					t.Errorf("without metrics peers only the health port may be reached: %v", ingress)
				}
			}},
			{"egress restricted", []string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.restrict=true",
				"--set", "networkPolicy.egress.cidrs={10.96.0.1/32,203.0.113.0/24}"}, checkNetworkPolicyRestrictedEgress},
		} {
			t.Run(tc.name, func(t *testing.T) {
				manifest := mustRender(t, append([]string{"--kube-version", server}, tc.args...)...)
				np := find(parse(t, manifest), "NetworkPolicy", release+"-controller-manager")
				if np == nil {
					t.Fatal("no NetworkPolicy rendered")
				}
				tc.check(t, np)
				t.Logf("accepted by kube-apiserver %s:\n%s", server, dryRun(t, manifest))
			})
		}
	})

	// cert-manager's Certificate is a CRD this API server does not serve: it is checked as
	// rendered, the rest (the Deployment mounting its Secret, the ServiceMonitor verifying it)
	// is dry-run.
	t.Run("metrics certificate from cert-manager", func(t *testing.T) {
		manifest := mustRender(t, "--kube-version", server, "--set", "metrics.certManager.enabled=true",
			"--set", "metrics.certManager.issuerRef.name=cluster-ca", "--set", "metrics.certManager.issuerRef.kind=ClusterIssuer",
			"--set", "serviceMonitor.enabled=true")
		objs := parse(t, manifest)
		checkMetricsCertificate(t, objs, release+"-metrics-cert", "ClusterIssuer")
		out := dryRun(t, manifest)
		if strings.Contains(out, "certificate.cert-manager.io") {
			t.Errorf("the Certificate reached the API server, which has no such kind:\n%s", out)
		}
		t.Logf("the rest accepted by kube-apiserver %s:\n%s", server, out)
	})
}

// withoutUnservedKinds drops from a manifest the objects whose kinds the local API server does
// not serve (cert-manager's Certificate); the tests check those as rendered.
func withoutUnservedKinds(t *testing.T, manifest []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, o := range parse(t, manifest) {
		if o.GroupVersionKind().Group == "cert-manager.io" {
			continue
		}
		j, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(j)
		b.WriteString("\n")
	}
	return b.Bytes()
}

// checkMetricsCertificate checks the Certificate cert-manager issues for the metrics endpoint, the
// Deployment mounting its Secret as --metrics-cert-path, and the ServiceMonitor verifying it.
func checkMetricsCertificate(t *testing.T, objs []*unstructured.Unstructured, secret, issuerKind string) {
	t.Helper()
	svc := find(objs, "Service", "")
	if svc == nil {
		t.Fatal("no metrics Service")
	}
	serverName := svc.GetName() + "." + namespace + ".svc"
	cert := find(objs, "Certificate", "")
	if cert == nil {
		t.Fatal("no Certificate rendered")
	}
	if cert.GetAPIVersion() != "cert-manager.io/v1" || cert.GetNamespace() != namespace {
		t.Errorf("Certificate %s in %q", cert.GetAPIVersion(), cert.GetNamespace())
	}
	spec, _, _ := unstructured.NestedMap(cert.Object, "spec")
	if spec["secretName"] != secret {
		t.Errorf("the Certificate's secretName is %v, want %s", spec["secretName"], secret)
	}
	if !reflect.DeepEqual(spec["dnsNames"], []any{svc.GetName(), serverName}) {
		t.Errorf("the Certificate's dnsNames %v do not name the Service %s", spec["dnsNames"], serverName)
	}
	if ref, _ := spec["issuerRef"].(map[string]any); ref["name"] != "cluster-ca" || ref["kind"] != issuerKind || ref["group"] != "cert-manager.io" {
		t.Errorf("issuerRef = %v", spec["issuerRef"])
	}
	if u, _ := spec["usages"].([]any); !slices.Contains(u, "server auth") {
		t.Errorf("usages %v lack server auth", spec["usages"])
	}
	wantArgs(t, objs, "--metrics-cert-path=/etc/scim-operator/metrics-certs")
	dep := find(objs, "Deployment", "")
	volumes, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
	mounted := false
	for _, v := range volumes {
		if name, _, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); name == secret {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("the Deployment does not mount Secret %s: %v", secret, volumes)
	}
	sm := find(objs, "ServiceMonitor", "")
	if sm == nil {
		t.Fatal("no ServiceMonitor rendered")
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	tls, _, _ := unstructured.NestedMap(endpoints[0].(map[string]any), "tlsConfig")
	want := map[string]any{"serverName": serverName, "ca": map[string]any{"secret": map[string]any{"name": secret, "key": "ca.crt"}}}
	if !reflect.DeepEqual(tls, want) {
		t.Errorf("the ServiceMonitor's tlsConfig = %v, want %v (verified, no insecureSkipVerify)", tls, want)
	}
}

func checkNetworkPolicyOpenEgress(t *testing.T, np *unstructured.Unstructured) {
	t.Helper()
	if types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes"); !reflect.DeepEqual(types, []string{"Ingress"}) {
		t.Errorf("policyTypes = %v, want only Ingress (egress open)", types)
	}
	if sel, _, _ := unstructured.NestedStringMap(np.Object, "spec", "podSelector", "matchLabels"); sel["app.kubernetes.io/component"] != "controller-manager" || sel["app.kubernetes.io/instance"] != release {
		t.Errorf("podSelector %v does not select the manager pods", sel)
	}
	ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
	if len(ingress) != 2 {
		t.Fatalf("%d ingress rules, want 2 (health, metrics): %v", len(ingress), ingress)
	}
	health := ingress[0].(map[string]any)
	if _, ok := health["from"]; ok || !reflect.DeepEqual(health["ports"], []any{map[string]any{"port": int64(8081), "protocol": "TCP"}}) {
		t.Errorf("the health port should be open to anyone (kubelet probes): %v", health)
	}
	metrics := ingress[1].(map[string]any)
	want := []any{map[string]any{
		"namespaceSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "kubernetes.io/metadata.name", "operator": "In", "values": []any{"monitoring"}}}},
		"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "prometheus"}},
	}}
	if !reflect.DeepEqual(metrics["from"], want) || !reflect.DeepEqual(metrics["ports"], []any{map[string]any{"port": int64(8443), "protocol": "TCP"}}) {
		t.Errorf("metrics rule = %v, want port 8443 from %v", metrics, want)
	}
}

func checkNetworkPolicyRestrictedEgress(t *testing.T, np *unstructured.Unstructured) {
	t.Helper()
	if types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes"); !reflect.DeepEqual(types, []string{"Ingress", "Egress"}) {
		t.Errorf("policyTypes = %v, want Ingress and Egress", types)
	}
	egress, _, _ := unstructured.NestedSlice(np.Object, "spec", "egress")
	if len(egress) != 2 {
		t.Fatalf("%d egress rules, want 2 (DNS, CIDRs): %v", len(egress), egress)
	}
	dns := egress[0].(map[string]any)
	if !reflect.DeepEqual(dns["ports"], []any{map[string]any{"port": int64(53), "protocol": "UDP"}, map[string]any{"port": int64(53), "protocol": "TCP"}}) {
		t.Errorf("DNS rule ports = %v", dns["ports"])
	}
	if to, _ := json.Marshal(dns["to"]); !strings.Contains(string(to), `"k8s-app":"kube-dns"`) {
		t.Errorf("DNS rule goes to %s, want the kube-dns pods", to)
	}
	cidrs := egress[1].(map[string]any)
	want := []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.96.0.1/32"}}, map[string]any{"ipBlock": map[string]any{"cidr": "203.0.113.0/24"}}}
	if !reflect.DeepEqual(cidrs["to"], want) || cidrs["ports"] != nil {
		t.Errorf("CIDR rule = %v, want any port to %v", cidrs, want)
	}
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
		"--cluster-resource-namespace="+namespace, "--kube-api-qps=50", "--kube-api-burst=100")
	checkHighAvailability(t, objs)
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
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Certificate"} {
		if find(objs, kind, "") != nil {
			t.Errorf("%s rendered by default", kind)
		}
	}
	for _, a := range args(t, objs) {
		if strings.HasPrefix(a, "--metrics-cert-path") {
			t.Errorf("unexpected default arg %q (no certificate configured)", a)
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
		"--namespaced-target-allowed-cidrs=10.20.0.0/16,10.21.0.0/16", "--namespaced-target-denied-cidrs=", "--zap-log-level=debug",
		"--kube-api-qps=200", "--kube-api-burst=400", "--credentials-recheck-interval=30s")
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
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "MutatingAdmissionPolicy", "NetworkPolicy", "Certificate"} {
		if find(objs, kind, "") == nil {
			t.Errorf("no %s rendered", kind)
		}
	}
	// The user's zone constraint, and the chart's node one beside it.
	spread, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "topologySpreadConstraints")
	var keys []string
	for _, c := range spread {
		keys = append(keys, c.(map[string]any)["topologyKey"].(string))
	}
	if !reflect.DeepEqual(keys, []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"}) {
		t.Errorf("topologySpreadConstraints on %v, want the zone one given and the chart's node one", keys)
	}
	// An explicit serviceMonitor.tlsConfig is used as given.
	sm := find(objs, "ServiceMonitor", "")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if tls, _, _ := unstructured.NestedMap(endpoints[0].(map[string]any), "tlsConfig"); tls["serverName"] != "scim-controller-manager-metrics-service.scim-operator-system.svc" {
		t.Errorf("the ServiceMonitor's tlsConfig is not the one given: %v", tls)
	}
	if cert := find(objs, "Certificate", ""); cert != nil {
		if s, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); s != "scim-metrics-cert" {
			t.Errorf("the Certificate writes Secret %q, not metrics.certSecret", s)
		}
		if d, _, _ := unstructured.NestedString(cert.Object, "spec", "duration"); d != "2160h" {
			t.Errorf("the Certificate's duration is %q", d)
		}
	}
	np := find(objs, "NetworkPolicy", "")
	egress, _, _ := unstructured.NestedSlice(np.Object, "spec", "egress")
	if len(egress) != 3 {
		t.Errorf("%d egress rules, want DNS, CIDRs and the extra rule", len(egress))
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
	for _, kind := range []string{"CustomResourceDefinition", "MutatingAdmissionPolicy", "ValidatingAdmissionPolicy", "Service", "ServiceAccount", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "NetworkPolicy", "Certificate"} {
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
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 1 {
		t.Errorf("replicas = %d, want 1", r)
	}
	if spread, ok, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "topologySpreadConstraints"); ok {
		t.Errorf("topologySpreadConstraints with spreadAcrossNodes=false: %v", spread)
	}
}

// checkHighAvailability: two replicas that elect a leader, a budget that keeps one up, and a
// preference (not a requirement) for different nodes.
func checkHighAvailability(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	dep := find(objs, "Deployment", "")
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas = %d, want 2", r)
	}
	wantArgs(t, objs, "--leader-elect")
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	selects := func(what string, sel map[string]string) {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s selects %s=%s, which the manager pods (%v) lack", what, k, v, podLabels)
			}
		}
	}
	pdb := find(objs, "PodDisruptionBudget", "")
	if pdb == nil {
		t.Fatal("no PodDisruptionBudget by default")
	}
	spec, _, _ := unstructured.NestedMap(pdb.Object, "spec")
	if spec["maxUnavailable"] != int64(1) || spec["minAvailable"] != nil {
		t.Errorf("the PodDisruptionBudget: %v, want maxUnavailable 1", spec)
	}
	sel, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
	selects("the PodDisruptionBudget", sel)
	spread, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "topologySpreadConstraints")
	if len(spread) != 1 {
		t.Fatalf("topologySpreadConstraints = %v, want one on kubernetes.io/hostname", spread)
	}
	c := spread[0].(map[string]any)
	if c["topologyKey"] != "kubernetes.io/hostname" || c["whenUnsatisfiable"] != "ScheduleAnyway" || c["maxSkew"] != int64(1) ||
		!reflect.DeepEqual(c["matchLabelKeys"], []any{"pod-template-hash"}) {
		t.Errorf("the spread constraint %v is not a soft one across nodes", c)
	}
	sel, _, _ = unstructured.NestedStringMap(c, "labelSelector", "matchLabels")
	selects("the spread constraint", sel)
	if aff, ok, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec", "affinity"); ok {
		t.Errorf("an affinity by default (the spread is soft, a constraint): %v", aff)
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
