package connect

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Unit tests of least privilege on Secrets: the generated RBAC, and how a rotation is noticed
// without a watch.

// The generated RBAC never lists or watches Secrets cluster-wide: RBAC cannot tell a
// metadata-only list from a list of the data. Only the Role of the operator's own namespace
// (its credential snapshots) may list them there.
func TestGeneratedRBACGetsSecretsByNameOnly(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var role struct {
			Kind     string              `json:"kind"`
			Metadata metav1.ObjectMeta   `json:"metadata"`
			Rules    []rbacv1.PolicyRule `json:"rules"`
		}
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		for _, rule := range role.Rules {
			if !containsAny(rule.APIGroups, "", "*") || !containsAny(rule.Resources, "secrets", "*") {
				continue
			}
			switch {
			case slices.Contains(rule.Verbs, "watch") || slices.Contains(rule.Verbs, "*"):
				t.Errorf("%s %s may watch Secrets: %v", role.Kind, role.Metadata.Name, rule.Verbs)
			case role.Kind == "ClusterRole" && !slices.Equal(rule.Verbs, []string{"get"}):
				t.Errorf("ClusterRole %s: Secrets %v, want get only", role.Metadata.Name, rule.Verbs)
			case role.Kind == "Role" && role.Metadata.Namespace != "system":
				t.Errorf("Role %s on Secrets in namespace %q, want the operator's (kustomize's system)", role.Metadata.Name, role.Metadata.Namespace)
			case role.Kind == "ClusterRole":
				found = true
			}
		}
	}
	if !found {
		t.Error("no ClusterRole rule gets Secrets: the targets' credentials could not be read")
	}
}

// secretGets counts the Gets of Secrets a fake API server answers.
func secretGets(objs ...*corev1.Secret) (client.Client, *atomic.Int32) {
	var n atomic.Int32
	c := secretsReader(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*corev1.Secret); ok {
				n.Add(1)
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	return c, &n
}

func rotate(t *testing.T, c client.Client, s *corev1.Secret, token string) {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(s), s); err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"token": []byte(token)}
	if err := c.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// acceptOnly is a SCIM endpoint that accepts one bearer token and answers the others status.
func acceptOnly(t *testing.T, token *atomic.Value, status int) (string, *atomic.Int32) {
	var refused atomic.Int32
	srv, _ := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token.Load().(string) {
			refused.Add(1)
			w.WriteHeader(status)
			return
		}
		scimOK(w, r)
	}))
	return srv.URL + "/scim/v2", &refused
}

func loopbackBuilder(r client.Reader) *SecretClientBuilder {
	b := NewSecretClientBuilder(r, time.Second)
	b.Guard = NewAddressGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)
	return b
}

// age makes the credentials of t look read d ago.
func age(b *SecretClientBuilder, t *targets.Target, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conns[t.Key()].readAt = time.Now().Add(-d)
}

// A rotated Secret is read again once the recheck interval passed, not before, and the
// connection (with its cached token) is kept when the data did not change.
func TestCredentialsAreReadAgainAfterTheRecheck(t *testing.T) {
	ctx := context.Background()
	var accepted atomic.Value
	accepted.Store("s3cret-token")
	endpoint, refused := acceptOnly(t, &accepted, http.StatusUnauthorized)
	tgt, sec := bearerTargetView(scimv1.KindScimTarget, endpoint)
	c, gets := secretGets(sec)
	b := loopbackBuilder(c)
	b.Recheck = time.Hour

	v1, err := b.CredentialsVersion(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.ForTarget(ctx, tgt); err != nil {
			t.Fatal(err)
		}
	}
	if n := gets.Load(); n != 1 {
		t.Fatalf("%d Gets of the Secret within the recheck interval, want 1", n)
	}
	conn := b.conns[tgt.Key()]

	// Read again, unchanged: the same connection.
	age(b, tgt, 2*time.Hour)
	if v, _ := b.CredentialsVersion(ctx, tgt); v != v1 || gets.Load() != 2 {
		t.Fatalf("after the interval: version %q (want %q), %d Gets (want 2)", v, v1, gets.Load())
	}
	if b.conns[tgt.Key()].auth != conn.auth {
		t.Fatal("an unchanged Secret rebuilt the connection")
	}

	rotate(t, c, sec, "token-2")
	if v, _ := b.CredentialsVersion(ctx, tgt); v != v1 {
		t.Fatal("the rotation was read before the recheck interval passed")
	}
	age(b, tgt, 2*time.Hour)
	v2, err := b.CredentialsVersion(ctx, tgt)
	if err != nil || v2 == v1 {
		t.Fatalf("after the interval the rotation is not seen: %q, %v", v2, err)
	}
	accepted.Store("token-2")
	cl, _ := b.ForTarget(ctx, tgt)
	if _, err := cl.Get(ctx, "Users", "u1"); err != nil || refused.Load() != 0 {
		t.Fatalf("the rotated token: %v, %d refused", err, refused.Load())
	}
}

// A 401 or 403 makes the client read the Secret again at once and retry with the rotated
// credentials; a target that refuses every request gets the Secret read at most once a
// reloadGap, and no retry when nothing changed.
func TestRefusedCredentialsAreReadAgainAndRetriedOnce(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			ctx := context.Background()
			var accepted atomic.Value
			accepted.Store("s3cret-token")
			endpoint, refused := acceptOnly(t, &accepted, status)
			tgt, sec := bearerTargetView(scimv1.KindScimTarget, endpoint)
			c, gets := secretGets(sec)
			b := loopbackBuilder(c)
			b.Recheck = time.Hour
			cl, err := b.ForTarget(ctx, tgt)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Get(ctx, "Users", "u1"); err != nil {
				t.Fatal(err)
			}

			// The provider revokes the old token as the Secret is rotated.
			rotate(t, c, sec, "token-2")
			accepted.Store("token-2")
			age(b, tgt, 2*reloadGap) // read before the rotation, within the recheck interval
			if _, err := cl.Get(ctx, "Users", "u1"); err != nil {
				t.Fatalf("the rotated token was not read again on %d: %v", status, err)
			}
			if n := refused.Load(); n != 1 {
				t.Fatalf("%d requests refused, want 1 (then the retry with the rotated token)", n)
			}
			// Later clients use the rotated token at once.
			cl2, _ := b.ForTarget(ctx, tgt)
			if _, err := cl2.Get(ctx, "Users", "u1"); err != nil || refused.Load() != 1 {
				t.Fatalf("a later client: %v, %d refused", err, refused.Load())
			}

			// Every token refused: one read of the Secret per reloadGap, and no retry.
			accepted.Store("none")
			before := gets.Load()
			for range 5 {
				_, err := cl2.Get(ctx, "Users", "u1")
				if !scim.IsUnauthorized(err) {
					t.Fatalf("want %d, got %v", status, err)
				}
			}
			if n := gets.Load() - before; n > 1 {
				t.Fatalf("%d Gets of the Secret for 5 refused requests within %s, want at most 1", n, reloadGap)
			}
			if n := refused.Load(); n != 1+5 {
				t.Fatalf("%d requests refused, want 6: nothing changed, so nothing was retried", n)
			}
		})
	}
}

// containsAny reports whether list holds one of values.
func containsAny(list []string, values ...string) bool {
	return slices.ContainsFunc(values, func(v string) bool { return slices.Contains(list, v) })
}
