package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

const importToken = "import-suite-token"

// splitManifests splits import's stream into its documents.
func splitManifests(out string) []string {
	if strings.TrimSpace(out) == "" {
		return nil
	}
	return strings.Split(out, "\n---\n")
}

// decodeManifest reads one document strictly into a ServiceIdentity (a field the API does not
// know fails), and as the unstructured object the API server is sent.
func decodeManifest(doc string) (*scimv1.ServiceIdentity, *unstructured.Unstructured) {
	si := &scimv1.ServiceIdentity{}
	Expect(yaml.UnmarshalStrict([]byte(doc), si)).To(Succeed(), doc)
	u := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed(), doc)
	return si, u
}

// dryRunCreate asks the API server to create the object, server-side dry-run with strict field
// validation: the schema, its CEL rules and unknown fields are all checked, nothing is stored.
func dryRunCreate(ctx context.Context, u *unstructured.Unstructured) error {
	return k8s.Create(ctx, u.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict"))
}

// tenantOf makes a user who may read the namespace's identities and targets (and, when
// clusterTargets, ClusterScimTargets) but no Secret.
func tenantOf(ctx context.Context, ns, user string, clusterTargets bool) string {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "importer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities", "scimtargets"}, Verbs: []string{"get", "list"}}}}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "importer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})).To(Succeed())
	if clusterTargets {
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user + "-cst"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"clusterscimtargets"}, Verbs: []string{"get", "list"}}}}
		Expect(k8s.Create(ctx, cr)).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user + "-cst"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})).To(Succeed())
	}
	return writeKubeconfig(envtest.User{Name: user})
}

var _ = Describe("kubectl scim import", Ordered, func() {
	var (
		ctx    context.Context
		ns     string
		srv    *scimserver.Server
		now    = time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
		offer  map[string]string // userName -> account id of the accounts import must offer
		output string            // the first import's stdout
	)

	BeforeAll(func() {
		ctx = context.Background()
		ns = newNamespace(ctx)
		var err error
		srv, err = scimserver.New(importToken)
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(srv.Stop)

		// 1,000 accounts made by hand on the provider before the operator came: no externalId.
		offer = map[string]string{}
		put := func(attrs map[string]any) string {
			id := srv.Users.Put(attrs)
			if _, owned := attrs["externalId"]; !owned && !strings.EqualFold(attrs["userName"].(string), "claimed-bot") {
				offer[attrs["userName"].(string)] = id
			}
			return id
		}
		for i := range 994 {
			put(map[string]any{"userName": fmt.Sprintf("svc-%04d", i), "displayName": fmt.Sprintf("Service %d", i), "active": i%100 != 7})
		}
		put(map[string]any{"userName": "Svc_Reports@Example.com", "displayName": "Reports"}) // lowercased, '@', '.', '_' replaced
		put(map[string]any{"userName": "billing." + ns, "userType": "ServiceAccount"})       // the default userName form: ".<ns>" dropped
		put(map[string]any{"userName": "etl.loader"})                                        // both derive etl-loader: hashed
		put(map[string]any{"userName": "etl_loader"})
		put(map[string]any{"userName": "taken"}) // an identity of that name exists (with another userName): hashed
		put(map[string]any{"userName": "x" + strings.Repeat("long-name-", 10)})
		Expect(offer).To(HaveLen(1000))

		// Someone's accounts: this cluster's, another cluster's, and one with an externalId of
		// no known form: never offered.
		put(map[string]any{"userName": "owned-bot." + ns, "externalId": "plugin-test/" + ns + "/owned-bot"})
		put(map[string]any{"userName": "their-bot", "externalId": "other-cluster/prod/their-bot"})
		put(map[string]any{"userName": "hr-sync", "externalId": "f3b1c0de-5e1f-4c2a-9d7e-000000000001"})
		// An account an identity already claims (its spec.userName, not provisioned yet:
		// the target is in Observe mode), in another letter case.
		put(map[string]any{"userName": "Claimed-Bot"})
		Expect(srv.Users.Len()).To(Equal(1004))

		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-app-token"},
			StringData: map[string]string{"token": importToken}})).To(Succeed())
		Expect(k8s.Create(ctx, &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-app"},
			Spec: scimv1.ScimTargetSpec{Endpoint: srv.Endpoint(), AllowInsecureHTTP: true, Mode: scimv1.ModeObserve,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "legacy-app-token", Key: "token"}}}}})).To(Succeed())
		claimed := identityIn(ns, "claimed", ref("legacy-app"))
		claimed.Spec.UserName = "claimed-bot"
		Expect(k8s.Create(ctx, claimed)).To(Succeed())
		taken := identityIn(ns, "taken", ref("legacy-app"))
		taken.Spec.UserName = "taken-elsewhere"
		Expect(k8s.Create(ctx, taken)).To(Succeed())
	})

	It("offers exactly the accounts no identity owns, in one paged list, as manifests the API server accepts", func() {
		srv.ResetCounts()
		r := kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32")
		Expect(r.err).NotTo(HaveOccurred(), r.Err)
		output = r.Out
		counts := srv.RequestCounts()
		GinkgoWriter.Printf("SCIM requests of the import of %d accounts: %v\n", srv.Users.Len(), counts)
		// 1,004 accounts in pages of the provider's maxResults (200): six pages, and the
		// ServiceProviderConfig that says so. No GET of a single account.
		Expect(counts).To(Equal(map[string]int{"GET ServiceProviderConfig": 1, "GET Users": 6}))
		Expect(r.Err).To(Equal("Listed 1004 account(s) of ScimTarget/" + ns + "/legacy-app in 6 page(s) of up to 200: 7 SCIM request(s) in all.\n" +
			"Skipped 3 with an externalId (this cluster's or another's: never offered) and 1 an identity already claims.\n" +
			"Wrote 1000 ServiceIdentity manifest(s) to stdout.\n"))

		docs := splitManifests(r.Out)
		Expect(docs).To(HaveLen(1000))
		names := map[string]string{}
		got := map[string]string{}
		for _, doc := range docs {
			si, u := decodeManifest(doc)
			Expect(si.Namespace).To(Equal(ns))
			Expect(names).NotTo(HaveKey(si.Name), "two manifests named %s", si.Name)
			names[si.Name] = si.Spec.UserName
			Expect(si.Spec.TargetRefs).To(Equal([]scimv1.TargetReference{{Name: "legacy-app"}}))
			Expect(si.Spec.Adopt).NotTo(BeNil())
			Expect(si.Spec.Adopt.UserName).To(Equal(si.Spec.UserName))
			Expect(si.Spec.Adopt.Target).To(BeEmpty())
			got[si.Spec.UserName] = si.Spec.Adopt.ID
			Expect(doc).To(HavePrefix("# Imported by kubectl scim import from ScimTarget/" + ns + "/legacy-app (" + srv.Endpoint() + ") at 2026-12-07T16:00:00Z.\n"))
			Expect(doc).NotTo(ContainSubstring(importToken))
			Expect(dryRunCreate(ctx, u)).To(Succeed(), doc)
		}
		Expect(got).To(Equal(offer))

		By("names derived from the userName, and said so")
		Expect(names).To(HaveKeyWithValue("svc-0042", "svc-0042"))
		Expect(names).To(HaveKeyWithValue("svc-reports-example-com", "Svc_Reports@Example.com"))
		Expect(names).To(HaveKeyWithValue("billing", "billing."+ns))
		Expect(names).NotTo(HaveKey("etl-loader"))
		Expect(names).NotTo(HaveKey("taken"))
		var hashed []string
		for name, userName := range names {
			if strings.HasPrefix(name, "etl-loader-") || strings.HasPrefix(name, "taken-") || strings.HasPrefix(name, "xlong") {
				Expect(name).To(MatchRegexp(`-[0-9a-f]{6}$`))
				Expect(len(name)).To(BeNumerically("<=", 63))
				hashed = append(hashed, userName)
			}
		}
		sort.Strings(hashed)
		Expect(hashed).To(Equal([]string{"etl.loader", "etl_loader", "taken", "x" + strings.Repeat("long-name-", 10)}))
		doc := manifestFor(docs, "Svc_Reports@Example.com")
		Expect(doc).To(ContainSubstring("\n# metadata.name derived from userName \"Svc_Reports@Example.com\": lowercased, \".\", \"@\", \"_\" replaced by '-'.\n"))
		Expect(manifestFor(docs, "billing."+ns)).To(ContainSubstring("\n# metadata.name derived from userName \"billing." + ns + "\": \"." + ns + "\" dropped.\n"))
		Expect(manifestFor(docs, "etl.loader")).To(MatchRegexp(`\n# metadata.name derived from userName "etl.loader": "." replaced by '-', suffix "-[0-9a-f]{6}" \(hash of the userName\) added: another account's name would be the same.\n`))
		Expect(manifestFor(docs, "taken")).To(MatchRegexp(`\n# metadata.name derived from userName "taken": suffix "-[0-9a-f]{6}" \(hash of the userName\) added: ServiceIdentity %s/taken exists.\n`, ns))
		Expect(manifestFor(docs, "svc-0042")).NotTo(ContainSubstring("metadata.name"))
	})

	It("writes an inactive account's identity suspended", func() {
		doc := manifestFor(splitManifests(output), "svc-0007")
		si, _ := decodeManifest(doc)
		Expect(si.Spec.Suspend).To(BeTrue())
		Expect(si.Spec.DisplayName).To(Equal("Service 7"))
		Expect(doc).To(ContainSubstring(`# Account id "` + offer["svc-0007"] + `", userName "svc-0007", inactive, no externalId`))
		Expect(doc).To(ContainSubstring("# spec.suspend: true keeps the inactive account inactive once adopted"))
	})

	It("is deterministic, and writes one file per account with --output-dir", func() {
		r := kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(Equal(output))

		dir := filepath.Join(GinkgoT().TempDir(), "gitops", ns)
		r = kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--output-dir", dir, "--owner", "alice@example.com")
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Out).To(BeEmpty())
		Expect(r.Err).To(ContainSubstring("Wrote 1000 ServiceIdentity manifest(s) to " + dir + ".\n"))
		files, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(1000))
		b, err := os.ReadFile(filepath.Join(dir, "billing.yaml"))
		Expect(err).NotTo(HaveOccurred())
		si, u := decodeManifest(string(b))
		Expect(si.Name).To(Equal("billing"))
		Expect(si.Spec.Owner).To(Equal("alice@example.com"))
		Expect(si.Spec.UserType).To(Equal("ServiceAccount"))
		Expect(dryRunCreate(ctx, u)).To(Succeed())

		By("a directory that has the files already is left alone")
		r = kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--output-dir", dir)
		Expect(r.err).To(MatchError(ContainSubstring("already has billing.yaml")))
	})

	It("narrows the list with --filter, sent to the provider", func() {
		srv.ResetCounts()
		r := kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--filter", `userName sw "svc-00"`)
		Expect(r.err).NotTo(HaveOccurred())
		docs := splitManifests(r.Out)
		Expect(docs).To(HaveLen(100))
		for _, doc := range docs {
			si, _ := decodeManifest(doc)
			Expect(si.Spec.UserName).To(HavePrefix("svc-00"))
		}
		Expect(srv.RequestCounts()).To(Equal(map[string]int{"GET ServiceProviderConfig": 1, "GET Users?filter": 1}))

		By("a filter the provider finds wrong is an error, not a list of everything")
		r = kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--filter", `userName zz "svc"`)
		Expect(r.err).To(MatchError(ContainSubstring(`the provider refused --filter "userName zz \"svc\""`)))
		Expect(r.Out).To(BeEmpty())
	})

	It("lists everything, and says so, when the provider does not filter", func() {
		t := &scimv1.ScimTarget{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "legacy-app"}, t)).To(Succeed())
		// As the operator records discovery (with maxResults 500 from an override).
		t.Status.Capabilities = &scimv1.Capabilities{Filter: new(bool), MaxResults: ptrTo(int32(500))}
		Expect(k8s.Status().Update(ctx, t)).To(Succeed())
		DeferCleanup(func() {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			t.Status.Capabilities = nil
			Expect(k8s.Status().Update(ctx, t)).To(Succeed())
		})
		srv.ResetCounts()
		r := kubectlScim(ctx, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--filter", `userName sw "svc-00"`)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.Err).To(HavePrefix("Warning: ScimTarget/" + ns + "/legacy-app says it does not support filters: --filter is not applied, every account is listed.\n"))
		Expect(splitManifests(r.Out)).To(HaveLen(1000))
		// The target's status said maxResults: no ServiceProviderConfig; the server's own
		// page cap is 200, so pages of 500 come back as 200 and the list goes on.
		Expect(srv.RequestCounts()).To(Equal(map[string]int{"GET Users": 6}))
	})

	It("guards a ScimTarget's endpoint as the operator does", func() {
		srv.ResetCounts()
		r := kubectlScim(ctx, now, "import", "legacy-app", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring("endpoint address is not allowed for a namespaced ScimTarget")))
		Expect(r.err).To(MatchError(ContainSubstring("allow its range with --allowed-cidrs")))
		Expect(srv.RequestCounts()).To(BeEmpty())
	})

	It("fails clearly, naming the Secret and never its content, for a user who may not read it", func() {
		tenant := tenantOf(ctx, ns, "importer-"+ns, false)
		var r result
		Eventually(func() string {
			r = kubectlScimAs(ctx, tenant, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32")
			return fmt.Sprint(r.err)
		}).Should(ContainSubstring("cannot read Secret " + ns + "/legacy-app-token, the credentials of ScimTarget/" + ns + "/legacy-app: forbidden: " +
			"your credentials may not get it (RBAC: get secrets in namespace " + ns + ")"))
		Expect(r.Out + r.Err + r.err.Error()).NotTo(ContainSubstring(importToken))
	})
})

// A ClusterScimTarget's Secrets are in the operator's namespace: an admin imports from it, a
// tenant cannot.
var _ = Describe("kubectl scim import from a ClusterScimTarget", Ordered, func() {
	var (
		ctx  context.Context
		ns   string
		name string
		now  = time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	)

	BeforeAll(func() {
		ctx = context.Background()
		ns = newNamespace(ctx)
		name = "corp-" + ns
		srv, err := scimserver.New(importToken)
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(srv.Stop)
		srv.Users.Put(map[string]any{"userName": "reports." + ns, "displayName": "Reports"})
		srv.Users.Put(map[string]any{"userName": "ceo@acme.dev"})
		srv.Users.Put(map[string]any{"userName": "sync." + ns, "userType": "Employee"})
		// A userName that would end a YAML comment and start a document of its own.
		srv.Users.Put(map[string]any{"userName": "inj\n---\napiVersion: v1\nkind: Secret", "displayName": "x\r\n# y"})
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: name + "-token"},
			StringData: map[string]string{"token": importToken}})).To(Succeed())
		Expect(k8s.Create(ctx, &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: scimv1.ClusterScimTargetSpec{
				ScimTargetSpec: scimv1.ScimTargetSpec{Endpoint: srv.Endpoint(), AllowInsecureHTTP: true, Mode: scimv1.ModeObserve, Adoption: scimv1.AdoptionNamed,
					Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: name + "-token", Key: "token"}}}},
				AllowedNamespaces: &scimv1.AllowedNamespaces{Names: []string{ns}},
			}})).To(Succeed())
	})

	It("writes manifests that name the ClusterScimTarget, with a warning where its guardrails would refuse one", func() {
		r := kubectlScim(ctx, now, "import", "ClusterScimTarget/"+name, "-n", ns)
		Expect(r.err).NotTo(HaveOccurred(), r.Err)
		Expect(r.Err).To(ContainSubstring("Wrote 4 ServiceIdentity manifest(s) to stdout.\n3 of them carry a WARNING comment"))
		docs := splitManifests(r.Out)
		Expect(docs).To(HaveLen(4))
		for _, doc := range docs {
			si, u := decodeManifest(doc)
			Expect(si.Spec.TargetRefs).To(Equal([]scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: name}}))
			Expect(si.Spec.Adopt.Target).To(Equal("ClusterScimTarget/" + name))
			Expect(dryRunCreate(ctx, u)).To(Succeed())
		}
		Expect(manifestFor(docs, "reports."+ns)).NotTo(ContainSubstring("WARNING"))
		Expect(manifestFor(docs, "ceo@acme.dev")).To(ContainSubstring(`# WARNING: not allowed by the target's guardrails: namespace ` + ns + ` may not claim userName "ceo@acme.dev"`))
		Expect(manifestFor(docs, "sync."+ns)).To(ContainSubstring(`may not claim userType "Employee"`))

		By("a provider's text stays inside its comment line and its YAML value")
		doc := manifestFor(docs, "inj\n---\napiVersion: v1\nkind: Secret")
		si, _ := decodeManifest(doc)
		Expect(si.Kind).To(Equal("ServiceIdentity"))
		Expect(si.Spec.DisplayName).To(Equal("x\r\n# y"))
		Expect(si.Name).To(Equal("inj-apiversion-v1-kind-secret"))
		for _, line := range strings.Split(doc, "\n") {
			Expect(line).NotTo(HavePrefix("kind: Secret"))
			Expect(line).NotTo(Equal("---"))
		}
		Expect(doc).To(ContainSubstring(`# Account id "user-000004", userName "inj\n---\napiVersion: v1\nkind: Secret", active, no externalId`))
	})

	It("tells a tenant that only cluster admins can read its Secret", func() {
		tenant := tenantOf(ctx, ns, "cluster-importer-"+ns, true)
		var r result
		Eventually(func() string {
			r = kubectlScimAs(ctx, tenant, now, "import", "ClusterScimTarget/"+name, "-n", ns)
			return fmt.Sprint(r.err)
		}).Should(ContainSubstring("cannot read Secret " + operatorNS + "/" + name + "-token, the credentials of ClusterScimTarget/" + name + ": forbidden: " +
			"a ClusterScimTarget's Secrets live in the operator's namespace " + operatorNS + ", which only cluster admins may read"))
		Expect(r.Out).To(BeEmpty())
		Expect(r.err.Error()).NotTo(ContainSubstring(importToken))
	})
})

// manifestFor is the document whose spec.userName is userName.
func manifestFor(docs []string, userName string) string {
	for _, doc := range docs {
		si, _ := decodeManifest(doc)
		if si.Spec.UserName == userName {
			return doc
		}
	}
	Fail("no manifest for userName " + userName)
	return ""
}

func ptrTo[T any](v T) *T { return &v }

func TestDeriveName(t *testing.T) {
	cases := []struct{ userName, ns, name, changed string }{
		{"svc-0001", "team-a", "svc-0001", ""},
		{"billing-bot.team-a", "team-a", "billing-bot", `derived from userName "billing-bot.team-a": ".team-a" dropped`},
		{"Billing.Team-A", "team-a", "billing", `derived from userName "Billing.Team-A": lowercased, ".team-a" dropped`},
		{"a.b.team-b", "team-a", "a-b-team-b", `derived from userName "a.b.team-b": "." replaced by '-'`},
		{"ceo@acme.dev", "dev", "ceo-acme", `derived from userName "ceo@acme.dev": ".dev" dropped, "@" replaced by '-'`},
		{"_svc_", "x", "svc", `derived from userName "_svc_": "_" replaced by '-', '-' trimmed from the ends`},
		{"@@@", "x", "account", `derived from userName "@@@": "@" replaced by '-', '-' trimmed from the ends, nothing usable was left: named "account"`},
		{"日本", "x", "account", `derived from userName "日本": "日", "本" replaced by '-', '-' trimmed from the ends, nothing usable was left: named "account"`},
		{".team-a", "team-a", "team-a", `derived from userName ".team-a": "." replaced by '-', '-' trimmed from the ends`},
	}
	for _, c := range cases {
		d := deriveName(c.userName, c.ns)
		if d.name != c.name || d.changed != c.changed {
			t.Errorf("deriveName(%q, %q) = %q, %q; want %q, %q", c.userName, c.ns, d.name, d.changed, c.name, c.changed)
		}
		if len(d.name) > 63 || !dns1123Label.MatchString(d.name) {
			t.Errorf("deriveName(%q) = %q: not a DNS-1123 label", c.userName, d.name)
		}
	}
	long := deriveName(strings.Repeat("Very-Long-", 20), "x")
	if len(long.name) > 63 || !dns1123Label.MatchString(long.name) || !strings.Contains(long.changed, "cut to 63 characters") {
		t.Errorf("a long userName gives %q, %q", long.name, long.changed)
	}
	if again := deriveName(strings.Repeat("Very-Long-", 20), "x"); again != long {
		t.Errorf("not deterministic: %v then %v", long, again)
	}
	if other := deriveName(strings.Repeat("Very-Long-", 19)+"Other", "x"); other.name == long.name {
		t.Errorf("two long userNames with the same beginning share %q", long.name)
	}
}

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
