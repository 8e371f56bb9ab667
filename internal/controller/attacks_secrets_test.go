package controller

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// secretCache records what of Secrets enters the suite manager's cache, after the transforms
// the operator configures.
type secretCache struct {
	mu    sync.Mutex
	whole int               // whole Secrets (with their data) offered to the cache
	held  map[string]string // "namespace/name": JSON of what the cache keeps
}

var cachedSecrets = &secretCache{held: map[string]string{}}

// watch wraps every cache transform of the manager's options with the recorder.
func (c *secretCache) watch(o *ctrl.Options) {
	for obj, b := range o.Cache.ByObject {
		b.Transform = c.record(b.Transform)
		o.Cache.ByObject[obj] = b
	}
	o.Cache.DefaultTransform = c.record(o.Cache.DefaultTransform)
}

func (c *secretCache) record(next toolscache.TransformFunc) toolscache.TransformFunc {
	apply := func(in any) (any, error) {
		if next == nil {
			return in, nil
		}
		return next(in)
	}
	return func(in any) (any, error) {
		whole := false
		switch o := in.(type) {
		case *corev1.Secret:
			whole = true
		case *metav1.PartialObjectMetadata:
			if o.Kind != "Secret" {
				return apply(in)
			}
		default:
			return apply(in)
		}
		out, err := apply(in)
		if err != nil {
			return out, err
		}
		m, err := meta.Accessor(out)
		if err != nil {
			return out, err
		}
		data, _ := json.Marshal(out)
		c.mu.Lock()
		defer c.mu.Unlock()
		if whole {
			c.whole++
		}
		c.held[m.GetNamespace()+"/"+m.GetName()] = string(data)
		return out, nil
	}
}

func (c *secretCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

func (c *secretCache) wholeSecrets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.whole
}

func (c *secretCache) of(ns, name string) func() string {
	return func() string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.held[ns+"/"+name]
	}
}

// recordingServer is a SCIM server that accepts any credentials and records the Authorization
// headers it was sent.
func recordingServer() (endpoint string, seen func() []string) {
	backend, err := scimserver.New("")
	Expect(err).NotTo(HaveOccurred())
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		backend.ServeHTTP(w, r)
	}))
	DeferCleanup(srv.Close)
	return srv.URL + scimserver.BasePath, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), auth...)
	}
}

// admissionFile reads a file of config/admission with the install's namespace and service
// account filled in as config/default's kustomize vars fill them: this suite's.
func admissionFile(name string) []byte {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "admission", name))
	Expect(err).NotTo(HaveOccurred())
	return []byte(strings.NewReplacer("$(SCIM_OPERATOR_NAMESPACE)", operatorNS,
		"$(SCIM_OPERATOR_SERVICE_ACCOUNT)", "scim-operator-controller-manager").Replace(string(data)))
}

// installPolicies creates the admission policies of a config/admission file (only those of
// kinds, when given, with their bindings), named test-<name>[-suffix], each bound only to
// namespaces with these labels (nil: everywhere, as installed), until the spec ends.
func installPolicies(ctx context.Context, file, suffix string, nsLabels map[string]string, kinds ...string) {
	GinkgoHelper()
	var match *admissionv1.MatchResources
	if nsLabels != nil {
		match = &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: nsLabels}}
	}
	name := func(n string) string {
		if suffix == "" {
			return "test-" + n
		}
		return "test-" + n + "-" + suffix
	}
	for _, doc := range strings.Split(string(admissionFile(file)), "\n---\n") {
		var kind struct{ Kind string }
		Expect(yaml.Unmarshal([]byte(doc), &kind)).To(Succeed())
		if len(kinds) > 0 && !slices.Contains(kinds, strings.TrimSuffix(kind.Kind, "Binding")) {
			continue
		}
		var obj client.Object
		switch kind.Kind {
		case "ValidatingAdmissionPolicy":
			obj = &admissionv1.ValidatingAdmissionPolicy{}
		case "MutatingAdmissionPolicy":
			obj = &admissionv1.MutatingAdmissionPolicy{}
		case "ValidatingAdmissionPolicyBinding":
			obj = &admissionv1.ValidatingAdmissionPolicyBinding{}
		case "MutatingAdmissionPolicyBinding":
			obj = &admissionv1.MutatingAdmissionPolicyBinding{}
		default:
			Fail("not an admission policy: " + kind.Kind)
		}
		Expect(yaml.UnmarshalStrict([]byte(doc), obj)).To(Succeed())
		switch b := obj.(type) {
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			b.Spec.PolicyName, b.Spec.MatchResources = name(b.Spec.PolicyName), match
		case *admissionv1.MutatingAdmissionPolicyBinding:
			b.Spec.PolicyName, b.Spec.MatchResources = name(b.Spec.PolicyName), match
		}
		obj.SetName(name(obj.GetName()))
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, obj)).To(Succeed()) })
	}
}

// impersonating is a client of the suite's API server acting as user.
func impersonating(user string) client.Client {
	cfg := rest.CopyConfig(testEnv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: testScheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// grant binds user to a Role of rules in ns.
func grant(ctx context.Context, ns, user string, rules ...rbacv1.PolicyRule) {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}})).To(Succeed())
}

func bearerTarget(ns, name, secret, endpoint string) *scimv1.ScimTarget {
	return &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.ScimTargetSpec{Endpoint: endpoint, AllowInsecureHTTP: true,
			Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: secret, Key: "token"}}}}}
}

func tokenSecret(ns, name, token string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"token": token}}
}

var _ = Describe("Attacks on credentials", func() {
	ctx := context.Background()

	It("a tenant cannot have a Secret it may not read sent to its own URL", func() {
		// The shipped binding applies everywhere; this one to the namespace of this spec (and, as
		// for any namespaceSelector, to cluster-scoped objects: ClusterScimTargets).
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "secret-access-", Labels: map[string]string{"scim-test/secret-access": "on"}}}
		Expect(k8s.Create(ctx, ns)).To(Succeed())
		installPolicies(ctx, "secret-access-policy.yaml", "", ns.Labels, "ValidatingAdmissionPolicy")

		// The tenant's own SCIM server, which would receive the token: it accepts any.
		theirs, tokensSeen := recordingServer()

		Expect(k8s.Create(ctx, tokenSecret(ns.Name, "payroll-token", "payroll-s3cret"))).To(Succeed())
		Expect(k8s.Create(ctx, tokenSecret(ns.Name, "mallory-token", testToken))).To(Succeed())
		author := rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"scimtargets"},
			Verbs: []string{"get", "list", "create", "update", "patch"}}
		// mallory may write targets and read her own Secret; alice may read every Secret.
		grant(ctx, ns.Name, "mallory", author,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"mallory-token"}})
		grant(ctx, ns.Name, "alice", author, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
		mallory, alice := impersonating("mallory"), impersonating("alice")

		By("the API server authorizes with RBAC: mallory may get her Secret, not the payroll one")
		Eventually(func() error {
			return mallory.Get(ctx, keyOf(ns.Name, "mallory-token"), &corev1.Secret{})
		}).Should(Succeed())
		Expect(apierrors.IsForbidden(mallory.Get(ctx, keyOf(ns.Name, "payroll-token"), &corev1.Secret{}))).To(BeTrue())

		By("a target that sends the payroll token to mallory's server is refused, naming the Secret")
		deniedMsg := "mallory may not get Secret " + ns.Name + "/payroll-token"
		// Dry runs until the policy is active, so nothing reaches the operator before.
		Eventually(func() error {
			return mallory.Create(ctx, bearerTarget(ns.Name, "exfil", "payroll-token", theirs), client.DryRunAll)
		}).Should(MatchError(ContainSubstring(deniedMsg)))
		err := mallory.Create(ctx, bearerTarget(ns.Name, "exfil", "payroll-token", theirs))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(deniedMsg))

		By("her own Secret she may use, and edit what is not the spec")
		own := bearerTarget(ns.Name, "own", "mallory-token", theirs)
		Expect(mallory.Create(ctx, own)).To(Succeed())
		base := own.DeepCopy()
		own.Labels = map[string]string{"team": "mallory"}
		Expect(mallory.Patch(ctx, own, client.MergeFrom(base))).To(Succeed())
		base = own.DeepCopy()
		own.Spec.Auth.BearerToken.SecretKeyRef.Name = "payroll-token"
		err = mallory.Patch(ctx, own, client.MergeFrom(base))
		Expect(err).To(MatchError(ContainSubstring(deniedMsg)), "switching her target to the payroll Secret")

		By("alice, who may read it, uses the payroll Secret; mallory cannot re-point alice's target")
		payroll := bearerTarget(ns.Name, "payroll", "payroll-token", endpoint())
		Expect(alice.Create(ctx, payroll)).To(Succeed())
		base = payroll.DeepCopy()
		payroll.Spec.Endpoint = theirs
		Expect(mallory.Patch(ctx, payroll, client.MergeFrom(base))).To(MatchError(ContainSubstring(deniedMsg)))

		Expect(tokensSeen()).NotTo(ContainElement("Bearer payroll-s3cret"), "the payroll token reached mallory's server")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(payroll), payroll)).To(Succeed())
		Expect(payroll.Spec.Endpoint).To(Equal(endpoint()))

		By("a ClusterScimTarget's Secrets are checked in the cluster-resource namespace")
		Expect(k8s.Create(ctx, tokenSecret(operatorNS, "corp-shared-"+ns.Name, "corp-s3cret"))).To(Succeed())
		clusterAuthor := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cluster-target-author-" + ns.Name},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"clusterscimtargets"}, Verbs: []string{"create"}}}}
		Expect(k8s.Create(ctx, clusterAuthor)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, clusterAuthor)).To(Succeed()) })
		crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterAuthor.Name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterAuthor.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "mallory"}}}
		Expect(k8s.Create(ctx, crb)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, crb)).To(Succeed()) })
		cluster := func() *scimv1.ClusterScimTarget {
			t := bearerTarget("", "exfil-"+ns.Name, "corp-shared-"+ns.Name, theirs)
			return &scimv1.ClusterScimTarget{ObjectMeta: t.ObjectMeta, Spec: scimv1.ClusterScimTargetSpec{ScimTargetSpec: t.Spec}}
		}
		Eventually(func() error { return mallory.Create(ctx, cluster(), client.DryRunAll) }).Should(
			MatchError(ContainSubstring("mallory may not get Secret " + operatorNS + "/corp-shared-" + ns.Name)))
		Expect(k8s.Create(ctx, cluster(), client.DryRunAll)).To(Succeed(), "the cluster admin may read it")
	})

	It("the operator does not cache every Secret in the cluster", func() {
		ns := readyTargetNamespace(ctx)
		// A Secret no target references, applied as `kubectl apply` does: the value is in an
		// annotation too.
		marker := "unreferenced-s3cret-" + ns
		applied, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": map[string]string{"password": marker}})
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payroll-db",
				Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: string(applied)}},
			StringData: map[string]string{"password": marker},
		})).To(Succeed())

		// The operator has no informer on Secrets, not even on their metadata (its RBAC grants
		// no list or watch): none ever entered its cache, neither the referenced token of the
		// Ready target nor the unreferenced one.
		Consistently(cachedSecrets.of(ns, "payroll-db"), "2s").Should(BeEmpty())
		Expect(cachedSecrets.of(ns, "acme-token")()).To(BeEmpty())
		Expect(cachedSecrets.count()).To(BeZero(), "Secrets entered the operator's cache")
		Expect(cachedSecrets.wholeSecrets()).To(BeZero(), "whole Secrets, with their data, entered the operator's cache")
	})

	It("attack: a compromised operator token lists Secrets", func() {
		// The operator's ServiceAccount, bound to the generated RBAC (config/rbac/role.yaml) as
		// config/default binds it; a stolen token of it acts as this user.
		sa := "manager-" + newNamespace(ctx) // unique per run
		Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: sa}})).To(Succeed())
		user := "system:serviceaccount:" + operatorNS + ":" + sa
		bindGeneratedRBAC(ctx, sa)

		tenant := newNamespace(ctx)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "payroll-db"},
			StringData: map[string]string{"password": "payroll-s3cret"}})).To(Succeed())

		By("the API server's answer to the stolen token: no list, no watch of Secrets, anywhere")
		cfg := rest.CopyConfig(testEnv.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		stolen, err := client.NewWithWatch(cfg, client.Options{Scheme: testScheme})
		Expect(err).NotTo(HaveOccurred())
		// The bindings are in force once a get the ClusterRole allows succeeds.
		Eventually(func() error {
			return stolen.Get(ctx, keyOf(tenant, "payroll-db"), &corev1.Secret{})
		}).Should(Succeed(), "the operator gets, by name, the Secrets its targets reference")
		metadata := &metav1.PartialObjectMetadataList{}
		metadata.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		for what, list := range map[string]func() error{
			"list every Secret":                  func() error { return stolen.List(ctx, &corev1.SecretList{}) },
			"list a tenant's Secrets":            func() error { return stolen.List(ctx, &corev1.SecretList{}, client.InNamespace(tenant)) },
			"list Secrets' metadata (as before)": func() error { return stolen.List(ctx, metadata) },
			"watch every Secret": func() error {
				w, err := stolen.Watch(ctx, &corev1.SecretList{})
				if err == nil {
					w.Stop()
				}
				return err
			},
			"watch a tenant's Secrets": func() error {
				w, err := stolen.Watch(ctx, &corev1.SecretList{}, client.InNamespace(tenant))
				if err == nil {
					w.Stop()
				}
				return err
			},
		} {
			err := list()
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: want Forbidden, got %v", what, err)
		}

		By("the same, asked of the authorizer (SubjectAccessReview)")
		allowed := func(verb, ns string) bool {
			GinkgoHelper()
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "secrets", Namespace: ns}}}
			Expect(k8s.Create(ctx, sar)).To(Succeed())
			return sar.Status.Allowed
		}
		for _, ns := range []string{"", tenant, "kube-system"} {
			for _, verb := range []string{"list", "watch"} {
				Expect(allowed(verb, ns)).To(BeFalse(), "%s secrets in namespace %q", verb, ns)
			}
			Expect(allowed("get", ns)).To(BeTrue(), "get secrets in namespace %q", ns)
		}
		Expect(allowed("watch", operatorNS)).To(BeFalse(), "watch secrets in the operator's namespace")
		Expect(allowed("list", operatorNS)).To(BeTrue(), "its snapshots, in its own namespace")

		By("what the ServiceAccount may do, as `kubectl auth can-i --list` shows it")
		for _, ns := range []string{tenant, operatorNS} {
			review := &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}
			Expect(stolen.Create(ctx, review)).To(Succeed())
			var verbs []string
			for _, rule := range review.Status.ResourceRules {
				if containsAny(rule.APIGroups, "", "*") && containsAny(rule.Resources, "secrets", "*") {
					verbs = append(verbs, rule.Verbs...)
				}
			}
			Expect(verbs).NotTo(ContainElement(BeElementOf("watch", "*")), "namespace %s", ns)
			if ns == tenant {
				Expect(verbs).To(ConsistOf("get"), "namespace %s", ns)
			}
			// kubectl, where the control plane has it, prints what the operator may do.
			if kubectl := adminKubectl(); kubectl != nil {
				out, errOut, err := kubectl.Run("auth", "can-i", "--list", "--as="+user, "--namespace="+ns)
				if err == nil {
					text, _ := io.ReadAll(out)
					AddReportEntry("kubectl auth can-i --list --as="+user+" --namespace="+ns, string(text))
				} else {
					msg, _ := io.ReadAll(errOut)
					GinkgoWriter.Printf("kubectl auth can-i: %v: %s\n", err, msg)
				}
			}
		}
	})

	It("the operator needs no write access to tenants' Secrets", func() {
		By("the generated RBAC: Secrets got by name cluster-wide, written (and listed) only in the operator's namespace")
		data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		roles := 0
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var role struct {
				Kind     string              `json:"kind"`
				Metadata metav1.ObjectMeta   `json:"metadata"`
				Rules    []rbacv1.PolicyRule `json:"rules"`
			}
			Expect(yaml.Unmarshal([]byte(doc), &role)).To(Succeed())
			for _, rule := range role.Rules {
				if !containsAny(rule.APIGroups, "", "*") || !containsAny(rule.Resources, "secrets", "*") {
					continue
				}
				if role.Kind == "ClusterRole" {
					Expect(rule.Verbs).To(HaveEach(Equal("get")), "ClusterRole rule on Secrets: no list, no watch")
				} else {
					Expect(rule.Verbs).NotTo(ContainElement(BeElementOf("watch", "*")), "Role rule on Secrets")
					roles++
					Expect(role.Kind).To(Equal("Role"))
					Expect(role.Metadata.Namespace).To(Equal("system"), "the operator's own namespace (kustomize sets it)")
				}
			}
		}
		Expect(roles).To(Equal(1), "one namespaced Role writes the credential snapshots")

		By("a target keeps no hold on its tenant's Secret, and works after it is gone")
		ns := readyTargetNamespace(ctx)
		var ids []*scimv1.ServiceIdentity
		for _, name := range []string{"a", "b"} {
			si := newIdentity(ns, name, "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			ids = append(ids, si)
		}
		for _, si := range ids {
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, keyOf(ns, "acme-token"), secret)).To(Succeed())
		Expect(secret.Finalizers).To(BeEmpty())
		target := &scimv1.ScimTarget{}
		Expect(k8s.Get(ctx, keyOf(ns, "acme"), target)).To(Succeed())
		snapshot := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "scim-credentials-" + string(target.UID)}}
		Eventually(get(ctx, snapshot)).Should(WithTransform(func(s *corev1.Secret) map[string]string { return s.Labels },
			HaveKeyWithValue(connect.SnapshotLabel, "true")))

		// What deleting the namespace does, the target first: it waits for its identities.
		Expect(k8s.Delete(ctx, target)).To(Succeed())
		Eventually(get(ctx, target)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, "InUse"))
		Expect(k8s.Delete(ctx, secret)).To(Succeed())
		Eventually(gone(ctx, secret)).Should(BeTrue())
		deleteAndWaitRevoked(ctx, ns, ids)
		Eventually(gone(ctx, target)).Should(BeTrue())
		Eventually(gone(ctx, snapshot)).Should(BeTrue())

		By("a snapshot cannot be referenced as a target's Secret")
		other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "scim-credentials-" + ns,
			Labels: map[string]string{connect.SnapshotLabel: "true"}}, StringData: map[string]string{"credentials.json": `{}`}}
		Expect(k8s.Create(ctx, other)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, other))).To(Succeed()) }) // or swept below
		cst := &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: "snapshot-reader-" + ns},
			Spec: scimv1.ClusterScimTargetSpec{ScimTargetSpec: bearerTarget("", "", other.Name, endpoint()).Spec}}
		cst.Spec.Auth.BearerToken.SecretKeyRef.Key = "credentials.json"
		Expect(k8s.Create(ctx, cst)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, cst))).To(Succeed()) }) // or purged
		Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonCredentials))
		Expect(condition(cst, scimv1.ConditionReady).Message).To(ContainSubstring("credential snapshot"))

		By("a snapshot left by a finalizer removed by hand goes at the next start; a living target's stays")
		orphan := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "scim-credentials-00000000-0000-0000-0000-" + ns[len(ns)-5:] + "0000000",
			Labels: map[string]string{connect.SnapshotLabel: "true"}}, StringData: map[string]string{"credentials.json": `{}`}}
		Expect(k8s.Create(ctx, orphan)).To(Succeed())
		living := createTarget(ctx, ns, "living", testToken)
		Eventually(get(ctx, living)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		kept := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "scim-credentials-" + string(living.UID)}}
		Eventually(get(ctx, kept)).Should(Not(BeNil()))
		sweeper := &connect.SnapshotSweeper{Reader: k8s, Store: &connect.CredentialStore{Reader: k8s, Writer: k8s, Namespace: operatorNS}}
		Expect(sweeper.Start(ctx)).To(Succeed())
		Expect(gone(ctx, orphan)()).To(BeTrue())
		Expect(gone(ctx, other)()).To(BeTrue())
		Expect(gone(ctx, kept)()).To(BeFalse())
	})

	It("a rotated token is used within seconds", func() {
		// The provider accepts one token at a time; the operator's requests show which it sends.
		backend, err := scimserver.New("")
		Expect(err).NotTo(HaveOccurred())
		var accepted atomic.Value
		accepted.Store("token-1")
		var rejected atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+accepted.Load().(string) {
				rejected.Add(1)
				w.Header().Set("Content-Type", "application/scim+json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"token not valid"}`))
				return
			}
			backend.ServeHTTP(w, r)
		}))
		DeferCleanup(srv.Close)
		ns := newNamespace(ctx)
		t := createTarget(ctx, ns, "rotating", "token-1", func(t *scimv1.ScimTarget) { t.Spec.Endpoint = srv.URL + scimserver.BasePath })
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		first := newIdentity(ns, "before", "rotating")
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Eventually(get(ctx, first)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		// The provider issues token-2 and revokes token-1; the Secret is updated.
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, keyOf(ns, "rotating-token"), secret)).To(Succeed())
		secret.Data = map[string][]byte{"token": []byte("token-2")}
		accepted.Store("token-2")
		Expect(k8s.Update(ctx, secret)).To(Succeed())

		second := newIdentity(ns, "after", "rotating")
		Expect(k8s.Create(ctx, second)).To(Succeed())
		Eventually(get(ctx, second), "5s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(backend.UsersWhere("externalId", externalIDOf(ns, "after"))).To(HaveLen(1))
		Expect(k8s.Delete(ctx, first)).To(Succeed())
		Eventually(func() []map[string]any { return backend.UsersWhere("externalId", externalIDOf(ns, "before")) }, "5s").Should(BeEmpty())
		Expect(get(ctx, t)()).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		// Once rotated, the old token is not sent again.
		settled := rejected.Load()
		update(ctx, second, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "after rotation" })
		Eventually(func() any {
			return backend.UsersWhere("externalId", externalIDOf(ns, "after"))[0]["displayName"]
		}).Should(Equal("after rotation"))
		Expect(rejected.Load()).To(Equal(settled))
	})
})

// bindGeneratedRBAC binds the ServiceAccount sa of the operator's namespace to the rules of
// config/rbac/role.yaml, as config/default does: the ClusterRole cluster-wide, the Role in the
// operator's namespace (kustomize's "system").
func bindGeneratedRBAC(ctx context.Context, sa string) {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: operatorNS}}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var role struct {
			Kind  string              `json:"kind"`
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		Expect(yaml.Unmarshal([]byte(doc), &role)).To(Succeed())
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: role.Kind, Name: sa}
		switch role.Kind {
		case "ClusterRole":
			cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: role.Rules}
			crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa}, RoleRef: ref, Subjects: subject}
			Expect(k8s.Create(ctx, cr)).To(Succeed())
			Expect(k8s.Create(ctx, crb)).To(Succeed())
			DeferCleanup(func() { Expect(k8s.Delete(ctx, crb)).To(Succeed()); Expect(k8s.Delete(ctx, cr)).To(Succeed()) })
		case "Role":
			r := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: sa}, Rules: role.Rules}
			rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: sa}, RoleRef: ref, Subjects: subject}
			Expect(k8s.Create(ctx, r)).To(Succeed())
			Expect(k8s.Create(ctx, rb)).To(Succeed())
			DeferCleanup(func() { Expect(k8s.Delete(ctx, rb)).To(Succeed()); Expect(k8s.Delete(ctx, r)).To(Succeed()) })
		default:
			Fail("unexpected kind in config/rbac/role.yaml: " + role.Kind)
		}
	}
}

func containsAny(list []string, values ...string) bool {
	for _, v := range values {
		for _, l := range list {
			if l == v {
				return true
			}
		}
	}
	return false
}

// adminKubectl is a kubectl configured as a cluster admin of the suite's API server, or nil
// where the control plane has no kubectl.
func adminKubectl() interface {
	Run(args ...string) (stdout, stderr io.Reader, err error)
} {
	admin, err := testEnv.ControlPlane.AddUser(envtest.User{Name: "suite-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil
	}
	kubectl, err := admin.Kubectl()
	if err != nil {
		return nil
	}
	return kubectl
}
