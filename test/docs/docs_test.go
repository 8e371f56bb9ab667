// Package docs keeps the manifests in the documentation valid: every ```yaml block of the
// provider guides (docs/providers/*.md), docs/troubleshooting.md and docs/upgrade.md is sent to
// a real kube-apiserver (envtest, with the CRDs of config/crd/bases) as a server-side dry-run
// create with strict field validation, so a misspelt field, a value outside an enum or a broken
// CEL rule fails the test instead of the reader.
//
//	KUBEBUILDER_ASSETS=$(hack/envtest-bins.sh) go test ./test/docs/ -count=1 -v
package docs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const root = "../.."

// documents are the pages whose yaml blocks must be manifests the API server accepts. A page
// that does not exist (yet) is skipped; the provider guides must all exist.
var documents = []string{"docs/providers/*.md", "docs/troubleshooting.md", "docs/upgrade.md"}

// block is one ```yaml fenced block of a page.
type block struct {
	file string
	line int // of the opening fence, 1-based
	text string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var (
	fenceOpen  = regexp.MustCompile("^(\\s*)```yaml\\s*$")
	fenceClose = regexp.MustCompile("^\\s*```\\s*$")
)

// yamlBlocks returns the ```yaml blocks of a markdown page, their indentation (a block inside
// a list item) removed.
func yamlBlocks(file string, data []byte) ([]block, error) {
	var out []block
	var cur *block
	var indent string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil:
			if m := fenceOpen.FindStringSubmatch(line); m != nil {
				cur, indent = &block{file: file, line: n}, m[1]
			}
		case fenceClose.MatchString(line):
			out = append(out, *cur)
			cur = nil
		default:
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the yaml block opened at line %d is never closed", file, cur.line)
	}
	return out, sc.Err()
}

// objects decodes a block's documents; each must be a Kubernetes object (apiVersion, kind,
// metadata.name): a yaml block in these pages is a manifest to apply, never a fragment.
func objects(b block) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(b.text), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", b, err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: every yaml block must be a complete manifest (apiVersion, kind, metadata.name); "+
				"show fragments and command output in ```console blocks", b)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty yaml block", b)
	}
	return out, nil
}

// pages reads the documented pages and their blocks.
func pages(t *testing.T) map[string][]block {
	t.Helper()
	out := map[string][]block{}
	for _, pattern := range documents {
		files, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, f)
			blocks, err := yamlBlocks(rel, data)
			if err != nil {
				t.Fatal(err)
			}
			out[rel] = blocks
		}
	}
	return out
}

// The extraction itself: fences inside list items, several blocks, other languages ignored,
// an unclosed fence reported.
func TestYAMLBlocksExtraction(t *testing.T) {
	md := "text\n```yaml\na: 1\n```\n```console\n$ kubectl get x\n```\n1. step\n   ```yaml\n   b: 2\n   c:\n     d: 3\n   ```\n"
	got, err := yamlBlocks("x.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	want := []block{{"x.md", 2, "a: 1\n"}, {"x.md", 9, "b: 2\nc:\n  d: 3\n"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := yamlBlocks("x.md", []byte("```yaml\na: 1\n")); err == nil {
		t.Fatal("an unclosed fence was not reported")
	}
	if _, err := objects(block{"x.md", 1, "spec:\n  endpoint: x\n"}); err == nil {
		t.Fatal("a fragment was taken for a manifest")
	}
}

// Each provider guide shows a whole setup: a Secret, a target, and a ServiceIdentity using it,
// whose references resolve within the page (a Secret a target names is on the page, in the
// namespace the operator reads it from; the target an identity names is on the page).
func TestProviderGuidesAreComplete(t *testing.T) {
	const operatorNS = "scim-operator-system" // --cluster-resource-namespace as config/default and the chart set it
	guides := 0
	for file, blocks := range pages(t) {
		if !strings.HasPrefix(file, filepath.Join("docs", "providers")+string(filepath.Separator)) ||
			filepath.Base(file) == "README.md" {
			continue
		}
		guides++
		t.Run(filepath.Base(file), func(t *testing.T) {
			var objs []*unstructured.Unstructured
			for _, b := range blocks {
				o, err := objects(b)
				if err != nil {
					t.Fatal(err)
				}
				objs = append(objs, o...)
			}
			has := func(kind, ns, name string) bool {
				return slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool {
					return o.GetKind() == kind && o.GetNamespace() == ns && o.GetName() == name
				})
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
			}
			if kinds["Secret"] == 0 || kinds["ScimTarget"]+kinds["ClusterScimTarget"] == 0 || kinds["ServiceIdentity"] == 0 {
				t.Fatalf("the page needs a Secret, a ScimTarget or ClusterScimTarget, and a ServiceIdentity; it has %v", kinds)
			}
			for _, o := range objs {
				switch o.GetKind() {
				case "ScimTarget", "ClusterScimTarget":
					ns := o.GetNamespace()
					if o.GetKind() == "ClusterScimTarget" {
						ns = operatorNS
					}
					for _, name := range secretRefs(o.Object) {
						if !has("Secret", ns, name) {
							t.Errorf("%s %s names Secret %q, which the page does not create in namespace %q (where the operator reads it)",
								o.GetKind(), o.GetName(), name, ns)
						}
					}
				case "ServiceIdentity":
					refs, _, _ := unstructured.NestedSlice(o.Object, "spec", "targetRefs")
					for _, r := range refs {
						ref, _ := r.(map[string]any)
						kind, _ := ref["kind"].(string)
						name, _ := ref["name"].(string)
						ns := o.GetNamespace()
						if kind == "" {
							kind = "ScimTarget"
						}
						if kind == "ClusterScimTarget" {
							ns = ""
						}
						if !has(kind, ns, name) {
							t.Errorf("ServiceIdentity %s/%s names %s %q, which the page does not create", o.GetNamespace(), o.GetName(), kind, name)
						}
					}
				}
			}
		})
	}
	if guides < 4 {
		t.Fatalf("found %d provider guides in docs/providers, want at least 4 (AWS IAM Identity Center, Entra ID, Okta, generic)", guides)
	}
}

// secretRefs returns the names of the Secrets a target's spec refers to: every "name" under a
// field ending in SecretRef or SecretKeyRef.
func secretRefs(v any) []string {
	var out []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if strings.HasSuffix(key, "SecretRef") || strings.HasSuffix(key, "SecretKeyRef") || key == "secretKeyRef" || key == "secretRef" {
				if name, ok := x["name"].(string); ok {
					out = append(out, name)
				}
			}
			for k, c := range x {
				walk(k, c)
			}
		case []any:
			for _, c := range x {
				walk(key, c)
			}
		}
	}
	if m, ok := v.(map[string]any); ok {
		walk("", m["spec"])
	}
	return out
}

// Every manifest of the pages is accepted by the API server, as a dry-run create with strict
// field validation; a misspelt field and a CEL rule violation are refused (shown first, so a
// pass proves the check can fail).
func TestManifestsApplyToKubeAPIServer(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: run KUBEBUILDER_ASSETS=$(hack/envtest-bins.sh) go test ./test/docs/ (make test sets it)")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	t.Run("a misspelt field is refused", func(t *testing.T) {
		err := dryRun(ctx, c, mustObject(t, `
apiVersion: scim.nhi.dev/v1alpha1
kind: ClusterScimTarget
metadata: {name: typo}
spec:
  endpoint: https://scim.example.com/scim/v2
  auth: {bearerToken: {secretKeyRef: {name: t, key: token}}}
  deletionPolcy: Delete
`))
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.deletionPolcy"`) {
			t.Fatalf("want the API server to refuse spec.deletionPolcy as an unknown field, got %v", err)
		}
	})
	t.Run("a CEL rule violation is refused", func(t *testing.T) {
		err := dryRun(ctx, c, mustObject(t, `
apiVersion: scim.nhi.dev/v1alpha1
kind: ClusterScimTarget
metadata: {name: plain-http}
spec:
  endpoint: http://scim.example.com/scim/v2
  auth: {bearerToken: {secretKeyRef: {name: t, key: token}}}
`))
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "endpoint must use https://") {
			t.Fatalf("want the CEL rule on spec.endpoint to refuse http://, got %v", err)
		}
	})

	all := pages(t)
	files := make([]string, 0, len(all))
	for f := range all {
		files = append(files, f)
	}
	slices.Sort(files)
	count := 0
	for _, file := range files {
		for _, b := range all[file] {
			t.Run(b.String(), func(t *testing.T) {
				objs, err := objects(b)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range objs {
					if err := ensureNamespace(ctx, c, o); err != nil {
						t.Fatal(err)
					}
					count++
					if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" {
						continue // created for real above, so that the page's other objects can go there
					}
					if err := dryRun(ctx, c, o); err != nil {
						t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
					}
				}
			})
		}
	}
	t.Logf("%d manifests in %d pages accepted", count, len(files))
}

// dryRun creates o as a server-side dry-run with strict field validation: an unknown or
// duplicated field is an error, not a warning.
func dryRun(ctx context.Context, c client.Client, o *unstructured.Unstructured) error {
	return c.Create(ctx, o.DeepCopy(), client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
}

// ensureNamespace really creates the namespace a namespaced object goes to (and a Namespace
// the page declares), since a dry-run into a namespace that does not exist is refused.
func ensureNamespace(ctx context.Context, c client.Client, o *unstructured.Unstructured) error {
	name := o.GetNamespace()
	if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" {
		name = o.GetName()
	}
	if name == "" {
		return nil
	}
	err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func mustObject(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	objs, err := objects(block{file: "test", line: 1, text: s})
	if err != nil || len(objs) != 1 {
		t.Fatalf("bad test manifest: %v", err)
	}
	return objs[0]
}
