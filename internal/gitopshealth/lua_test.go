package gitopshealth

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

var (
	healthDir = filepath.Join("..", "..", "config", "argocd", "health")
	group     = "scim.nhi.dev"
	kinds     = []string{"ServiceIdentity", "ScimTarget", "ClusterScimTarget"}
	// states each kind's testdata must cover (captured by internal/controller/gitops_health_test.go).
	requiredStates = map[string][]string{
		"ServiceIdentity":   {"progressing", "healthy", "suspended", "degraded", "expired", "deleting"},
		"ScimTarget":        {"progressing", "healthy", "unauthorized", "breaker-open", "deleting"},
		"ClusterScimTarget": {"progressing", "healthy", "unauthorized", "deleting"},
	}
)

// healthTests is Argo CD's resource_customizations health_test.yaml, plus kstatus's verdict.
type healthTests struct {
	Tests []struct {
		HealthStatus Status `json:"healthStatus"`
		KStatus      string `json:"kstatus"`
		InputPath    string `json:"inputPath"`
	} `json:"tests"`
}

// readObject decodes a YAML object as Argo CD and kstatus get it from the API server: through
// the unstructured JSON decoder (integers are int64).
func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}

// TestHealthChecksOnRecordedObjects replays the objects the envtest suite recorded in every
// state, as Argo CD's own resource_customizations tests do, and kstatus next to them.
func TestHealthChecksOnRecordedObjects(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			dir := filepath.Join(healthDir, group, kind)
			script, err := LoadScript(healthDir, group, kind)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var tests healthTests
			if err := yaml.UnmarshalStrict(b, &tests); err != nil {
				t.Fatal(err)
			}
			var states []string
			for _, tc := range tests.Tests {
				states = append(states, strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"))
				u := readObject(t, filepath.Join(dir, tc.InputPath))
				if u.GetKind() != kind {
					t.Errorf("%s: kind %q", tc.InputPath, u.GetKind())
				}
				got, err := Evaluate(script, u.Object)
				if err != nil {
					t.Fatalf("%s: %v", tc.InputPath, err)
				}
				if got != tc.HealthStatus {
					t.Errorf("%s: Argo CD health %+v, want %+v", tc.InputPath, got, tc.HealthStatus)
				}
				ks, err := kstatus.Compute(u)
				if err != nil {
					t.Fatalf("%s: %v", tc.InputPath, err)
				}
				if string(ks.Status) != tc.KStatus {
					t.Errorf("%s: kstatus %s (%s), want %s", tc.InputPath, ks.Status, ks.Message, tc.KStatus)
				}
			}
			for _, s := range requiredStates[kind] {
				if !slices.Contains(states, s) {
					t.Errorf("no recorded %s in state %s (run make gitops-testdata)", kind, s)
				}
			}
		})
	}
}

// TestClusterScimTargetSharesTheScimTargetScript: the two kinds share one spec type and one
// status, so one script; Argo CD wants a file per kind.
func TestClusterScimTargetSharesTheScimTargetScript(t *testing.T) {
	a, err := LoadScript(healthDir, group, "ScimTarget")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadScript(healthDir, group, "ClusterScimTarget")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("config/argocd/health/scim.nhi.dev/ClusterScimTarget/health.lua differs from ScimTarget/health.lua: copy it")
	}
}

// TestArgoCDConfigMapPatchCarriesTheScripts: the argocd-cm patch users apply holds exactly the
// tested files.
func TestArgoCDConfigMapPatchCarriesTheScripts(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "argocd", "argocd-cm-patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var patch struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict(b, &patch); err != nil {
		t.Fatal(err)
	}
	if len(patch.Data) != len(kinds) {
		t.Errorf("argocd-cm patch has %d keys, want %d", len(patch.Data), len(kinds))
	}
	for _, kind := range kinds {
		script, err := LoadScript(healthDir, group, kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := patch.Data["resource.customizations.health."+group+"_"+kind]; got != script {
			t.Errorf("config/argocd/argocd-cm-patch.yaml is stale for %s: run make argocd-cm", kind)
		}
	}
}

// TestArgoCDChartValuesCarryTheScripts: the values for Argo CD's own Helm chart, shipped in
// the operator's chart, hold exactly the tested files.
func TestArgoCDChartValuesCarryTheScripts(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "charts", "scim-operator", "files", "argocd-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Configs struct {
			CM map[string]string `json:"cm"`
		} `json:"configs"`
	}
	if err := yaml.UnmarshalStrict(b, &values); err != nil {
		t.Fatal(err)
	}
	if len(values.Configs.CM) != len(kinds) {
		t.Errorf("argocd-values.yaml has %d keys, want %d", len(values.Configs.CM), len(kinds))
	}
	for _, kind := range kinds {
		script, err := LoadScript(healthDir, group, kind)
		if err != nil {
			t.Fatal(err)
		}
		if got := values.Configs.CM["resource.customizations.health."+group+"_"+kind]; got != script {
			t.Errorf("charts/scim-operator/files/argocd-values.yaml is stale for %s: run make argocd-cm", kind)
		}
	}
}

// TestEvaluate checks the runner against Argo CD's rules on hand-made objects.
func TestEvaluate(t *testing.T) {
	identity, err := LoadScript(healthDir, group, "ServiceIdentity")
	if err != nil {
		t.Fatal(err)
	}
	target, err := LoadScript(healthDir, group, "ScimTarget")
	if err != nil {
		t.Fatal(err)
	}
	cond := func(typ, status, reason, message string) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": reason, "message": message}
	}
	obj := func(generation int64, status map[string]any) map[string]any {
		o := map[string]any{"metadata": map[string]any{"name": "x", "generation": generation}, "spec": map[string]any{}}
		if status != nil {
			o["status"] = status
		}
		return o
	}
	cases := []struct {
		name   string
		script string
		obj    map[string]any
		want   Status
	}{
		{"a new identity", identity, obj(1, nil), Status{Progressing, "Waiting for the operator to observe the latest spec"}},
		{"a null status reads as absent", identity, map[string]any{"metadata": map[string]any{"generation": int64(1)}, "status": nil},
			Status{Progressing, "Waiting for the operator to observe the latest spec"}},
		{"a spec change not observed yet", identity, obj(2, map[string]any{"observedGeneration": int64(1),
			"conditions": []any{cond("Ready", "True", "Provisioned", "ok")}}), Status{Progressing, "Waiting for the operator to observe the latest spec"}},
		{"float generations (JSON numbers)", identity, map[string]any{"metadata": map[string]any{"generation": 3.0},
			"status": map[string]any{"observedGeneration": 3.0, "conditions": []any{cond("Ready", "True", "Provisioned", "ok")}}}, Status{Healthy, "Provisioned: ok"}},
		{"Stalled wins over Reconciling", identity, obj(1, map[string]any{"observedGeneration": int64(1),
			"conditions": []any{cond("Reconciling", "True", "Retrying", "r"), cond("Stalled", "True", "AccountConflict", "taken")}}), Status{Degraded, "AccountConflict: taken"}},
		{"an empty message shows the reason", identity, obj(1, map[string]any{"observedGeneration": int64(1),
			"conditions": []any{cond("Stalled", "True", "InvalidSpec", "")}}), Status{Degraded, "InvalidSpec"}},
		{"a target not probed yet", target, obj(1, nil), Status{Progressing, "Waiting for the first probe of the endpoint"}},
		{"a target whose Ready is False", target, obj(1, map[string]any{"observedGeneration": int64(1),
			"conditions": []any{cond("Ready", "False", "TargetUnreachable", "dial tcp: refused")}}), Status{Degraded, "TargetUnreachable: dial tcp: refused"}},
		{"an invalid status becomes Unknown", `return {status = "Fine", message = "?"}`, obj(1, nil), Status{Unknown, "Lua returned an invalid health status"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Evaluate(c.script, c.obj)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}

	t.Run("only the libraries argocd-cm scripts get", func(t *testing.T) {
		if _, err := Evaluate(`return {status = string.upper("healthy")}`, obj(1, nil)); err == nil {
			t.Error("the string library is open; Argo CD does not open it for argocd-cm scripts")
		}
		if _, err := Evaluate(`return "Healthy"`, obj(1, nil)); err == nil {
			t.Error("a script returning a string, not a table, was accepted")
		}
		if _, err := Evaluate(`while true do end`, obj(1, nil)); err == nil {
			t.Error("a script that never ends was not stopped")
		}
	})
}
