package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nhi-dev/scim-operator/internal/connect"
)

// A misspelt or mistyped value fails helm template, helm lint and helm install with the schema's
// error (values.schema.json), naming the value, instead of being ignored.
func TestSchemaRefusesMisspeltValues(t *testing.T) {
	for _, tc := range []struct {
		name, values, want string
	}{
		{"misspelt top-level value", "replica: 3\n", "at '': additional properties 'replica' not allowed"},
		{"misspelt nested value", "networkPolicy:\n  enabeld: true\n", "at '/networkPolicy': additional properties 'enabeld' not allowed"},
		{"misspelt deep value", "metrics:\n  certManager:\n    issuer: {name: ca}\n", "at '/metrics/certManager': additional properties 'issuer' not allowed"},
		{"misspelt budget", "podDisruptionBudget:\n  maxUnavailble: 1\n", "at '/podDisruptionBudget': additional properties 'maxUnavailble' not allowed"},
		{"admission policy neither auto nor a boolean", "admissionPolicies:\n  finalizer: maybe\n", "at '/admissionPolicies/finalizer': value must be one of 'auto', true, false"},
		{"admission policy as a string", "admissionPolicies:\n  secretAccess: \"false\"\n", "at '/admissionPolicies/secretAccess': value must be one of 'auto', true, false"},
		{"duration without a unit", "scimTimeout: 15\n", "at '/scimTimeout': got number, want string"},
		{"duration with a wrong unit", "scimTimeout: 15sec\n", "at '/scimTimeout': '15sec' does not match pattern"},
		{"CIDR out of range", "namespacedTargetAllowedCIDRs: [10.0.0.0/33]\n", "at '/namespacedTargetAllowedCIDRs/0': '10.0.0.0/33' does not match pattern"},
		{"bare address for a CIDR", "networkPolicy:\n  egress:\n    cidrs: [10.0.0.1]\n", "at '/networkPolicy/egress/cidrs/0': '10.0.0.1' does not match pattern"},
		{"zero QPS", "kubeAPI:\n  qps: 0\n", "at '/kubeAPI/qps': exclusiveMinimum"},
		{"fractional burst", "kubeAPI:\n  burst: 1.5\n", "at '/kubeAPI/burst': got number, want integer"},
		{"replicas as a string", "replicas: \"2\"\n", "at '/replicas': got string, want integer"},
		{"unknown pull policy", "image:\n  pullPolicy: always\n", "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"},
		{"namespace not a DNS label", "watchNamespaces: [Team_A]\n", "at '/watchNamespaces/0': 'Team_A' does not match pattern"},
		{"Prometheus duration", "serviceMonitor:\n  interval: 30 s\n", "at '/serviceMonitor/interval': '30 s' does not match pattern"},
		{"label value not a string", "commonLabels:\n  tier: 1\n", "at '/commonLabels/tier': got number, want string"},
		{"issuer kind", "metrics:\n  certManager:\n    issuerRef: {kind: Isuer}\n", "at '/metrics/certManager/issuerRef/kind': value must be one of 'Issuer', 'ClusterIssuer'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, "--values", file)
			if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template with %q: want the schema error %q, got %v", tc.values, tc.want, err)
			}
			out, _, err := run(helm(t), "lint", "--strict", chartDir, "--values", file)
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("helm lint with %q: want %q, got %v\n%s", tc.values, tc.want, err, out)
			}
		})
	}
	// helm install (and upgrade) check the same schema, and so does --set.
	_, _, err := run(helm(t), "install", release, chartDir, "--namespace", namespace, "--dry-run=client", "--set", "replica=3")
	if err == nil || !strings.Contains(err.Error(), "additional properties 'replica' not allowed") {
		t.Fatalf("helm install --set replica=3: %v", err)
	}
	// Values written as --set gives them still pass: a fractional QPS is a string there.
	out := mustRender(t, "--set", "kubeAPI.qps=12.5", "--set", "admissionPolicies.finalizer=false", "--set", "podDisruptionBudget.minAvailable=50%")
	if !strings.Contains(string(out), `"--kube-api-qps=12.5"`) || !strings.Contains(string(out), "minAvailable: 50%") {
		t.Errorf("--set kubeAPI.qps=12.5 / podDisruptionBudget.minAvailable=50%% did not render")
	}
}

// What the schema cannot say, the templates refuse, with a message that says what to do.
func TestChartRefusesUnsafeCombinations(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas without leader election", []string{"--set", "leaderElection.enabled=false"}, "replicas > 1 needs leaderElection.enabled: true (replicas is 2)"},
		{"a budget that holds every drain", []string{"--set", "replicas=1", "--set", "podDisruptionBudget.minAvailable=1"}, "podDisruptionBudget.minAvailable (1) must be below replicas (1)"},
		{"a budget that allows no eviction", []string{"--set", "podDisruptionBudget.maxUnavailable=0"}, "podDisruptionBudget.maxUnavailable 0 refuses every eviction"},
		{"a chart flag in extraArgs", []string{"--set", "extraArgs={--kube-api-qps=200}"}, "extraArgs sets --kube-api-qps, which the chart sets from kubeAPI.qps"},
		{"a chart flag in extraArgs, single dash", []string{"--set", "extraArgs={-leader-elect=false}"}, "extraArgs sets --leader-elect, which the chart sets from leaderElection.enabled"},
		{"a certificate without an issuer", []string{"--set", "metrics.certManager.enabled=true"}, "metrics.certManager.issuerRef.name is required"},
		{"a certificate over plain HTTP", []string{"--set", "metrics.certSecret=x", "--set", "metrics.secure=false"}, "metrics.certSecret and metrics.certManager need metrics.secure: true"},
		{"restricted egress to nowhere", []string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.restrict=true"}, "networkPolicy.egress.restrict needs networkPolicy.egress.cidrs"},
		{"scraper pods in no namespace", []string{"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.metrics.podLabels.app=prometheus"}, "networkPolicy.metrics.podLabels narrows networkPolicy.metrics.namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template %v: want %q, got %v", tc.args, tc.want, err)
			}
		})
	}
}

// kubeAPI.qps and kubeAPI.burst are always rendered (the chart's default is not the binary's),
// as numbers the binary's flag parser reads: 50/100 by default, whole numbers without an
// exponent, fractions as given.
func TestKubeAPIFlags(t *testing.T) {
	big := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(big, []byte("kubeAPI:\n  qps: 1000000\n  burst: 2000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args       []string
		qps, burst string
	}{
		{nil, "50", "100"},
		{[]string{"--set", "kubeAPI.qps=500", "--set", "kubeAPI.burst=1000"}, "500", "1000"},
		{[]string{"--set-json", "kubeAPI.qps=7.5"}, "7.5", "100"},
		{[]string{"--set", "kubeAPI.qps=0.5"}, "0.5", "100"},
		{[]string{"--values", big}, "1000000", "2000000"},
	} {
		objs := parse(t, mustRender(t, tc.args...))
		var got []string
		for _, a := range args(t, objs) {
			if strings.HasPrefix(a, "--kube-api-") {
				got = append(got, a)
			}
		}
		if want := []string{"--kube-api-qps=" + tc.qps, "--kube-api-burst=" + tc.burst}; !slices.Equal(got, want) {
			t.Errorf("%v: %q, want %q", tc.args, got, want)
		}
	}
}

// Every flag the chart renders is one the manager defines (cmd/), so a renamed flag cannot
// leave the chart passing one the binary refuses at start.
func TestChartFlagsAreManagerFlags(t *testing.T) {
	var src strings.Builder
	for _, f := range []string{"main.go", "metrics.go", "ssf.go"} {
		b, err := os.ReadFile(filepath.Join(root, "cmd", f))
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	seen := map[string]bool{}
	for _, values := range [][]string{nil, {"--values", allOn}, {"--values", allOff}, {"--set", "metrics.secure=false"}} {
		for _, a := range args(t, parse(t, mustRender(t, values...))) {
			name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
			if seen[name] || name == "zap-log-level" { // zap's flags are bound by zap.Options
				continue
			}
			seen[name] = true
			if !strings.Contains(src.String(), `"`+name+`"`) {
				t.Errorf("the chart passes --%s, which cmd/ does not define", name)
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d flags, each defined in cmd/: %s", len(names), strings.Join(names, ", "))
}

// schemaNode is the part of JSON Schema values.schema.json uses.
type schemaNode struct {
	Ref                  string                 `json:"$ref"`
	Type                 any                    `json:"type"`
	Properties           map[string]*schemaNode `json:"properties"`
	AdditionalProperties any                    `json:"additionalProperties"`
	Items                *schemaNode            `json:"items"`
	Definitions          map[string]*schemaNode `json:"definitions"`
}

func (n *schemaNode) isType(t string) bool {
	switch v := n.Type.(type) {
	case string:
		return v == t
	case []any:
		return slices.Contains(v, any(t))
	}
	return false
}

// Free-form Kubernetes fields: objects the schema leaves open (the API server checks them).
var openObjects = []string{"#/definitions/kubernetesObject", "#/definitions/kubernetesList items", "/global", "/extraEnv items"}

// values.schema.json and values.yaml agree: every value has a schema, every property of the
// schema a value (global aside: Helm gives it to subcharts), and every object the chart defines
// is closed (additionalProperties: false), so that a block added later (e.g. demo:) cannot be
// left open by mistake.
func TestSchemaCoversEveryValue(t *testing.T) {
	var root schemaNode
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	resolve := func(n *schemaNode) (*schemaNode, string) {
		if n.Ref == "" {
			return n, ""
		}
		name := strings.TrimPrefix(n.Ref, "#/definitions/")
		d := root.Definitions[name]
		if d == nil {
			t.Fatalf("$ref %s names no definition", n.Ref)
		}
		return d, n.Ref
	}
	// Closed: walk the schema.
	var walk func(path string, n *schemaNode)
	walk = func(path string, n *schemaNode) {
		if n.isType("object") && n.AdditionalProperties != false && !slices.Contains(openObjects, path) {
			if _, isMap := n.AdditionalProperties.(map[string]any); !isMap { // a map of strings (labels) is closed enough
				t.Errorf("schema %s: an object without additionalProperties: false (add it, or list it in openObjects if it is a free-form Kubernetes field)", path)
			}
		}
		for k, p := range n.Properties {
			walk(path+"/"+k, p)
		}
		if n.Items != nil {
			walk(path+" items", n.Items)
		}
	}
	walk("", &root)
	for name, d := range root.Definitions {
		walk("#/definitions/"+name, d)
	}

	// Both ways: values.yaml and the schema's properties.
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(values, &m); err != nil {
		t.Fatal(err)
	}
	var compare func(path string, v map[string]any, n *schemaNode)
	compare = func(path string, v map[string]any, n *schemaNode) {
		for k, e := range v {
			p := n.Properties[k]
			if p == nil {
				t.Errorf("value %s%s has no schema in values.schema.json", path, k)
				continue
			}
			p, _ = resolve(p)
			if sub, ok := e.(map[string]any); ok && p.Properties != nil {
				compare(path+k+".", sub, p)
			}
		}
		for k := range n.Properties {
			if _, ok := v[k]; !ok && path+k != "global" {
				t.Errorf("the schema describes %s%s, which values.yaml does not have", path, k)
			}
		}
	}
	compare("", m, &root)
}

// Inside an umbrella chart, Helm hands the chart a global: block; the closed schema lets it in.
func TestChartWorksAsADependency(t *testing.T) {
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "Chart.yaml"), []byte("apiVersion: v2\nname: platform\nversion: 0.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "values.yaml"), []byte("global:\n  imageRegistry: registry.example.com\nscim-operator:\n  replicas: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(parent, "charts", "scim-operator"), os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(helm(t), "template", "platform", parent, "--namespace", namespace)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^  replicas: 3$`).Match(out) {
		t.Error("the parent's value for the chart (replicas: 3) was not rendered")
	}
}

// values.yaml and the README list the operator's default denied CIDRs as the code has them
// (connect.DefaultDeniedCIDRs), with their number.
func TestDocsListTheDefaultDeniedCIDRs(t *testing.T) {
	n := len(connect.DefaultDeniedCIDRs)
	for _, f := range []string{"values.yaml", "README.md"} {
		b, err := os.ReadFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatal(err)
		}
		doc := strings.Join(strings.Fields(strings.NewReplacer("#", " ", "|", " ", "`", " ", ",", " ", "(", " ", ")", " ").Replace(string(b))), " ")
		for _, p := range connect.DefaultDeniedCIDRs {
			if !strings.Contains(" "+doc+" ", " "+p.String()+" ") {
				t.Errorf("%s does not list the default denied CIDR %s", f, p)
			}
		}
		if !strings.Contains(doc, strconv.Itoa(n)+" ranges") {
			t.Errorf("%s does not say the default has %d ranges", f, n)
		}
	}
}
