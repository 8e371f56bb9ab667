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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// The outputs of docs/migration.md and the plan and import sections of docs/kubectl-scim.md:
// PLUGIN_DOCS_SAMPLES=FILE writes them to FILE (the reference SCIM server on 127.0.0.1:18080 as
// in make dev, the namespace payments, the statuses written as the operator would while its
// Observe mode is not merged). Skipped otherwise.
var _ = Describe("docs samples", Ordered, func() {
	It("prints the migration's outputs", func() {
		out := os.Getenv("PLUGIN_DOCS_SAMPLES")
		if out == "" {
			Skip("PLUGIN_DOCS_SAMPLES is not set")
		}
		ctx := context.Background()
		ns := "payments"
		now := time.Now().UTC().Truncate(time.Second)
		at := mtime(now.Add(-90 * time.Second))
		var log strings.Builder
		run := func(args ...string) result {
			r := kubectlScim(ctx, now, args...)
			log.WriteString("$ kubectl scim " + strings.Join(args, " ") + "\n" + r.Out + r.Err)
			if r.err != nil {
				log.WriteString("Error: " + r.err.Error() + "\n")
			}
			log.WriteString("\n")
			return r
		}
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		srv, err := scimserver.New("dev-token")
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:18080")).To(Succeed())
		defer srv.Stop()
		srv.Users.Put(map[string]any{"userName": "svc-reports", "displayName": "Reports export"})
		srv.Users.Put(map[string]any{"userName": "billing-export.payments"})
		srv.Users.Put(map[string]any{"userName": "ETL_Loader", "displayName": "ETL loader"})
		srv.Users.Put(map[string]any{"userName": "old-cron", "active": false})
		srv.Users.Put(map[string]any{"userName": "hr-sync", "externalId": "other-cluster/hr/hr-sync"})
		srv.Users.Put(map[string]any{"userName": "ci-deployer.payments", "displayName": "CI", "externalId": "prod-eu/payments/ci-deployer"})
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-app-token"},
			StringData: map[string]string{"token": "dev-token"}})).To(Succeed())
		tgt := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-app"},
			Spec: scimv1.ScimTargetSpec{Endpoint: srv.Endpoint(), AllowInsecureHTTP: true, Mode: scimv1.ModeObserve,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "legacy-app-token", Key: "token"}}}}}
		Expect(k8s.Create(ctx, tgt)).To(Succeed())
		setPlan := func(p *scimv1.TargetPlan) {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tgt), tgt)).To(Succeed())
			tgt.Status.ObservedGeneration = tgt.Generation
			tgt.Status.Plan = p
			Expect(k8s.Status().Update(ctx, tgt)).To(Succeed())
		}
		setPlan(&scimv1.TargetPlan{PlannedAt: at, Actions: []scimv1.PlanCount{{Action: "Create", Count: 1}, {Action: "Update", Count: 1}, {Action: "Conflict", Count: 1}},
			Orphans: 0, OrphanAction: "Report", Breaker: "no deletion planned"})
		bb := identityIn(ns, "billing-bot", ref("legacy-app"))
		bb.Spec.DisplayName = "Billing bot"
		bb.Spec.Groups = []string{"payments-readers"}
		createIdentity(ctx, bb, scimv1.ServiceIdentityStatus{Targets: []scimv1.IdentityTargetStatus{planned("legacy-app", &scimv1.AccountPlan{Action: "Create", PlannedAt: at,
			Changes: []scimv1.AttributeChange{{Path: "active", Desired: "true"}, {Path: "displayName", Desired: `"Billing bot"`}, {Path: "externalId", Desired: `"prod-eu/payments/billing-bot"`},
				{Path: "userName", Desired: `"billing-bot.payments"`}, {Path: "userType", Desired: `"ServiceAccount"`}},
			GroupsAdded: []string{"payments-readers"}})}})
		ci := identityIn(ns, "ci-deployer", ref("legacy-app"))
		ci.Spec.DisplayName = "CI deployer"
		createIdentity(ctx, ci, scimv1.ServiceIdentityStatus{Targets: []scimv1.IdentityTargetStatus{planned("legacy-app", &scimv1.AccountPlan{Action: "Update", PlannedAt: at,
			Changes: []scimv1.AttributeChange{{Path: "displayName", Current: `"CI"`, Desired: `"CI deployer"`}, {Path: "userType", Desired: `"ServiceAccount"`}}})}})
		hr := identityIn(ns, "hr-sync", ref("legacy-app"))
		hr.Spec.UserName = "hr-sync"
		createIdentity(ctx, hr, scimv1.ServiceIdentityStatus{Targets: []scimv1.IdentityTargetStatus{planned("legacy-app", &scimv1.AccountPlan{Action: "Conflict", PlannedAt: at,
			Reason: `account user-000005 "hr-sync" carries externalId "other-cluster/hr/hr-sync": it is someone else's and is never written to`})}})

		run("plan", "-n", ns)
		run("plan", "legacy-app", "-n", ns, "--diff")
		run("import", "legacy-app", "-n", ns)
		r := run("import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--owner", "alice@example.com")
		run("import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--filter", `userName sw "svc-"`)
		// From the directory of FILE, as from a Git checkout.
		wd, err := os.Getwd()
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Chdir(filepath.Dir(out))).To(Succeed())
		run("import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32", "--output-dir", "gitops/"+ns)
		Expect(os.Chdir(wd)).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "corp-scim-token"},
			StringData: map[string]string{"token": "dev-token"}})).To(Succeed())
		Expect(k8s.Create(ctx, &scimv1.ClusterScimTarget{ObjectMeta: metav1.ObjectMeta{Name: "corp"},
			Spec: scimv1.ClusterScimTargetSpec{ScimTargetSpec: scimv1.ScimTargetSpec{Endpoint: "http://127.0.0.1:9/scim/v2", AllowInsecureHTTP: true, Mode: scimv1.ModeObserve,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "corp-scim-token", Key: "token"}}}}}})).To(Succeed())
		tenant := tenantOf(ctx, ns, "jane@example.com", true)
		var tr result
		Eventually(func() string {
			tr = kubectlScimAs(ctx, tenant, now, "import", "ClusterScimTarget/corp", "-n", ns)
			return fmt.Sprint(tr.err)
		}).Should(ContainSubstring("only cluster admins"))
		log.WriteString("$ kubectl scim import ClusterScimTarget/corp -n payments   # as a tenant\nError: " + tr.err.Error() + "\n\n")
		tr = kubectlScimAs(ctx, tenant, now, "import", "legacy-app", "-n", ns, "--allowed-cidrs", "127.0.0.1/32")
		log.WriteString("$ kubectl scim import legacy-app -n payments --allowed-cidrs 127.0.0.1/32   # as a user who may not read Secrets\nError: " + tr.err.Error() + "\n\n")
		// Apply them; the operator (Observe) plans Adopt.
		for _, doc := range splitManifests(r.Out) {
			si := &scimv1.ServiceIdentity{}
			Expect(yaml.UnmarshalStrict([]byte(doc), si)).To(Succeed())
			changes := []scimv1.AttributeChange{{Path: "externalId", Desired: `"prod-eu/payments/` + si.Name + `"`}, {Path: "userType", Desired: `"ServiceAccount"`}}
			createIdentity(ctx, si, scimv1.ServiceIdentityStatus{Targets: []scimv1.IdentityTargetStatus{planned("legacy-app", &scimv1.AccountPlan{Action: "Adopt", PlannedAt: at,
				Reason:  "spec.adopt: account " + si.Spec.Adopt.ID + " has userName " + si.Spec.Adopt.UserName + " and no externalId",
				Changes: changes})}})
		}
		setPlan(&scimv1.TargetPlan{PlannedAt: at, Actions: []scimv1.PlanCount{{Action: "Create", Count: 1}, {Action: "Adopt", Count: 4}, {Action: "Update", Count: 1}, {Action: "Conflict", Count: 1}},
			Orphans: 0, OrphanAction: "Report", Breaker: "no deletion planned"})
		run("plan", "-n", ns)
		run("plan", "legacy-app", "-n", ns, "-o", "json")
		tgt.Spec.Mode = scimv1.ModeEnforce
		Expect(k8s.Update(ctx, tgt)).To(Succeed())
		setPlan(nil)
		run("plan", "legacy-app", "-n", ns)
		Expect(os.WriteFile(out, []byte(log.String()), 0o644)).To(Succeed())
	})
})
