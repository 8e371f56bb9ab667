package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// The outputs of docs/migration.md and of the plan and import sections of docs/kubectl-scim.md,
// through the whole migration with the suite's running operator (namespace plugin-live) and a
// reference SCIM server on 127.0.0.1:18080 as in make dev: PLUGIN_DOCS_SAMPLES=FILE writes them
// to FILE. Skipped otherwise.
var _ = Describe("docs samples", Ordered, func() {
	It("runs the migration: Observe, plan, import, plan, Enforce", func() {
		out := os.Getenv("PLUGIN_DOCS_SAMPLES")
		if out == "" {
			Skip("PLUGIN_DOCS_SAMPLES is not set")
		}
		ctx := context.Background()
		ns := liveNS
		var log strings.Builder
		run := func(args ...string) result {
			r := kubectlScim(ctx, time.Time{}, args...)
			log.WriteString("$ kubectl scim " + strings.Join(args, " ") + "\n" + r.Out + r.Err + "\n")
			return r
		}
		srv, err := scimserver.New("dev-token")
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:18080")).To(Succeed())
		defer srv.Stop()
		// What legacy-app holds before the operator: accounts made by hand, another cluster's,
		// and one of this cluster's (cluster id plugin-test).
		srv.Users.Put(map[string]any{"userName": "svc-reports", "displayName": "Reports export"})
		srv.Users.Put(map[string]any{"userName": "billing-export." + ns})
		srv.Users.Put(map[string]any{"userName": "ETL_Loader", "displayName": "ETL loader"})
		srv.Users.Put(map[string]any{"userName": "old-cron", "active": false})
		srv.Users.Put(map[string]any{"userName": "hr-sync", "externalId": "other-cluster/hr/hr-sync"})
		srv.Users.Put(map[string]any{"userName": "ci-deployer." + ns, "displayName": "CI", "userType": "ServiceAccount",
			"externalId": "plugin-test/" + ns + "/ci-deployer"})
		srv.Groups.Put(map[string]any{"displayName": "payments-readers"})

		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-app-token"},
			StringData: map[string]string{"token": "dev-token"}})).To(Succeed())
		tgt := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-app"},
			Spec: scimv1.ScimTargetSpec{Endpoint: srv.Endpoint(), AllowInsecureHTTP: true, Mode: scimv1.ModeObserve,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "legacy-app-token", Key: "token"}}}}}
		Expect(k8s.Create(ctx, tgt)).To(Succeed())
		payroll := identityIn(ns, "payroll-bot", ref("legacy-app"))
		payroll.Spec.DisplayName = "Payroll bot"
		payroll.Spec.Groups = []string{"payments-readers"}
		ci := identityIn(ns, "ci-deployer", ref("legacy-app"))
		ci.Spec.DisplayName = "CI deployer"
		hr := identityIn(ns, "hr-sync", ref("legacy-app"))
		hr.Spec.UserName = "hr-sync"
		for _, si := range []*scimv1.ServiceIdentity{payroll, ci, hr} {
			Expect(k8s.Create(ctx, si)).To(Succeed())
		}
		planned := func(names ...string) {
			Eventually(func(g Gomega) {
				for _, n := range names {
					g.Expect(get(ctx, ns, n).Status.Targets).To(ContainElement(HaveField("Plan", Not(BeNil()))), n)
				}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tgt), tgt)).To(Succeed())
				g.Expect(tgt.Status.Plan).NotTo(BeNil())
				var n int32
				for _, c := range tgt.Status.Plan.Actions {
					n += c.Count
				}
				g.Expect(n).To(BeNumerically("==", len(names)))
			}, 30*time.Second).Should(Succeed())
		}
		planned("payroll-bot", "ci-deployer", "hr-sync")

		run("plan", "-n", ns)
		run("plan", "legacy-app", "-n", ns, "--diff")
		run("import", "legacy-app", "-n", ns)
		r := run("import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--owner", "alice@example.com")
		run("import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--filter", `userName sw "svc-"`)
		wd, err := os.Getwd()
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Chdir(filepath.Dir(out))).To(Succeed()) // as from a Git checkout
		run("import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--output-dir", "gitops/"+ns)
		Expect(os.Chdir(wd)).To(Succeed())

		By("a tenant may not read a ClusterScimTarget's Secret, nor a user without Secrets its own")
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "corp-scim-token"},
			StringData: map[string]string{"token": "dev-token"}})).To(Succeed())
		Expect(k8s.Create(ctx, &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: "corp"},
			Spec: scimv1.ClusterScimTargetSpec{ScimTargetSpec: scimv1.ScimTargetSpec{Endpoint: srv.Endpoint(), AllowInsecureHTTP: true, Mode: scimv1.ModeObserve,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "corp-scim-token", Key: "token"}}}}}})).To(Succeed())
		tenant := tenantOf(ctx, ns, "jane@example.com", true)
		var tr result
		Eventually(func() string {
			tr = kubectlScimAs(ctx, tenant, time.Time{}, "import", "ClusterScimTarget/corp", "-n", ns)
			return fmt.Sprint(tr.err)
		}).Should(ContainSubstring("only cluster admins"))
		log.WriteString("$ kubectl scim import ClusterScimTarget/corp -n " + ns + "   # as a tenant\n" + tr.Err + "\n")
		tr = kubectlScimAs(ctx, tenant, time.Time{}, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32")
		log.WriteString("$ kubectl scim import legacy-app -n " + ns + " --allowed-cidrs 127.0.0.1/32   # as a user who may not read Secrets\n" + tr.Err + "\n")

		By("the manifests applied: the operator plans Adopt")
		var imported []string
		for _, doc := range splitManifests(r.Out) {
			si, u := decodeManifest(doc)
			Expect(k8s.Create(ctx, u)).To(Succeed())
			imported = append(imported, si.Name)
		}
		planned(append([]string{"payroll-bot", "ci-deployer", "hr-sync"}, imported...)...)
		run("plan", "-n", ns)
		run("plan", "legacy-app", "-n", ns, "-o", "json")
		run("plan", "legacy-app", "-n", ns, "-o", "yaml")

		By("Enforce: the plan is applied")
		Expect(k8s.Patch(ctx, tgt, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"mode":"Enforce"}}`)))).To(Succeed())
		Eventually(func(g Gomega) {
			for _, n := range append([]string{"payroll-bot", "ci-deployer"}, imported...) {
				g.Expect(get(ctx, ns, n).Status.Conditions).To(ContainElement(And(HaveField("Type", scimv1.ConditionReady), HaveField("Status", metav1.ConditionTrue),
					HaveField("Reason", Not(Equal(scimv1.ReasonObserved))))), n)
			}
		}, 30*time.Second).Should(Succeed())
		run("plan", "legacy-app", "-n", ns)
		run("inventory", "-n", ns)
		users, _ := yaml.Marshal(srv.Users.All())
		log.WriteString("# the accounts on the provider\n" + string(users))
		Expect(os.WriteFile(out, []byte(log.String()), 0o644)).To(Succeed())
	})
})
