package controller

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/gitopshealth"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// healthDir holds the Argo CD health checks, in Argo CD's resource_customizations layout.
const kindServiceIdentity = "ServiceIdentity"

var healthDir = filepath.Join("..", "..", "config", "argocd", "health")

// gitopsVerdict is what Argo CD's health check and kstatus must say of one state of one kind.
// Where they differ, they differ by design (docs/gitops.md):
//   - a suspended identity is Suspended for Argo CD and Current for kstatus, which has no such state;
//   - a target whose endpoint fails (Ready=False, retried) is Degraded for Argo CD, since a human
//     has to look at the endpoint or its Secret, and InProgress for kstatus, which cannot tell a
//     retry from a doom without Stalled;
//   - a target before its first probe has no status: kstatus calls such an object Current, the
//     script waits for the probe;
//   - deleting is Terminating for kstatus; Argo CD reports Progressing ("Pending deletion")
//     before it runs any script, and the scripts say Progressing too.
type gitopsVerdict struct {
	health  string
	kstatus kstatus.Status
}

var gitopsVerdicts = map[string]map[string]gitopsVerdict{
	kindServiceIdentity: {
		"progressing": {gitopshealth.Progressing, kstatus.InProgressStatus},
		"healthy":     {gitopshealth.Healthy, kstatus.CurrentStatus},
		"suspended":   {gitopshealth.Suspended, kstatus.CurrentStatus},
		"degraded":    {gitopshealth.Degraded, kstatus.FailedStatus},
		"expired":     {gitopshealth.Degraded, kstatus.FailedStatus},
		"deleting":    {gitopshealth.Progressing, kstatus.TerminatingStatus},
	},
	scimv1.KindScimTarget: {
		"progressing":  {gitopshealth.Progressing, kstatus.CurrentStatus},
		"healthy":      {gitopshealth.Healthy, kstatus.CurrentStatus},
		"unauthorized": {gitopshealth.Degraded, kstatus.InProgressStatus},
		"breaker-open": {gitopshealth.Degraded, kstatus.FailedStatus},
		"deleting":     {gitopshealth.Progressing, kstatus.TerminatingStatus},
	},
	scimv1.KindClusterScimTarget: {
		"progressing":  {gitopshealth.Progressing, kstatus.CurrentStatus},
		"healthy":      {gitopshealth.Healthy, kstatus.CurrentStatus},
		"unauthorized": {gitopshealth.Degraded, kstatus.InProgressStatus},
		"deleting":     {gitopshealth.Progressing, kstatus.TerminatingStatus},
	},
}

// healthCase is one live object in one state, with the verdicts computed on it.
type healthCase struct {
	kind, state string
	object      map[string]any
	lua         gitopshealth.Status
	kstatus     *kstatus.Result
}

// checkHealth runs the kind's Argo CD health check and kstatus on obj as read from the API
// server, and expects the verdicts of gitopsVerdicts.
func checkHealth(kind, state string, obj client.Object) healthCase {
	GinkgoHelper()
	want, ok := gitopsVerdicts[kind][state]
	Expect(ok).To(BeTrue(), "no verdict for %s in state %s", kind, state)
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	Expect(err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{Object: content}
	u.SetAPIVersion(scimv1.GroupVersion.String())
	u.SetKind(kind)
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")

	script, err := gitopshealth.LoadScript(healthDir, scimv1.GroupVersion.Group, kind)
	Expect(err).NotTo(HaveOccurred())
	lua, err := gitopshealth.Evaluate(script, u.Object)
	Expect(err).NotTo(HaveOccurred())
	ks, err := kstatus.Compute(u)
	Expect(err).NotTo(HaveOccurred())
	Expect(lua.Status).To(Equal(want.health), "Argo CD health of %s %s (%s), message %q", kind, state, obj.GetName(), lua.Message)
	Expect(lua.Message).NotTo(BeEmpty())
	Expect(ks.Status).To(Equal(want.kstatus), "kstatus of %s %s (%s), message %q", kind, state, obj.GetName(), ks.Message)
	return healthCase{kind: kind, state: state, object: u.Object, lua: lua, kstatus: ks}
}

// writeHealthTestdata stores the live objects and their verdicts next to the scripts, as
// Argo CD's resource_customizations tests are laid out (testdata/*.yaml, health_test.yaml), so
// internal/gitopshealth replays them without a control plane. Only with
// GITOPS_HEALTH_TESTDATA=1 (make gitops-testdata).
func writeHealthTestdata(cases []healthCase) {
	if os.Getenv("GITOPS_HEALTH_TESTDATA") != "1" {
		return
	}
	type expected struct {
		HealthStatus gitopshealth.Status `json:"healthStatus"`
		KStatus      string              `json:"kstatus"`
		InputPath    string              `json:"inputPath"`
	}
	byKind := map[string][]expected{}
	for _, c := range cases {
		dir := filepath.Join(healthDir, scimv1.GroupVersion.Group, c.kind)
		Expect(os.MkdirAll(filepath.Join(dir, "testdata"), 0o755)).To(Succeed())
		b, err := yaml.Marshal(c.object)
		Expect(err).NotTo(HaveOccurred())
		input := filepath.Join("testdata", c.state+".yaml")
		Expect(os.WriteFile(filepath.Join(dir, input), b, 0o644)).To(Succeed())
		byKind[c.kind] = append(byKind[c.kind], expected{HealthStatus: c.lua, KStatus: string(c.kstatus.Status), InputPath: input})
	}
	for kind, tests := range byKind {
		b, err := yaml.Marshal(map[string]any{"tests": tests})
		Expect(err).NotTo(HaveOccurred())
		header := "# Generated by `make gitops-testdata` from live objects of the envtest suite\n" +
			"# (internal/controller/gitops_health_test.go); replayed by internal/gitopshealth.\n"
		Expect(os.WriteFile(filepath.Join(healthDir, scimv1.GroupVersion.Group, kind, "health_test.yaml"),
			append([]byte(header), b...), 0o644)).To(Succeed())
	}
}

// unprobedClusterTarget creates a ClusterScimTarget for endpoint (token testToken) without
// waiting for its probe.
func unprobedClusterTarget(ctx context.Context, name, endpoint string, allowed ...string) *scimv1.ClusterScimTarget {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, GenerateName: name + "-token-"},
		StringData: map[string]string{"token": testToken}}
	Expect(k8s.Create(ctx, secret)).To(Succeed())
	cst := &scimv1.ClusterScimTarget{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"},
		Spec: scimv1.ClusterScimTargetSpec{
			ScimTargetSpec: scimv1.ScimTargetSpec{Endpoint: endpoint, AllowInsecureHTTP: true,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: secret.Name, Key: "token"}}}},
			AllowedNamespaces: &scimv1.AllowedNamespaces{Names: allowed},
		},
	}
	Expect(k8s.Create(ctx, cst)).To(Succeed())
	return cst
}

// ownServer starts a reference SCIM server for one spec, so its faults touch nothing else.
func ownServer(token string) *scimserver.Server {
	GinkgoHelper()
	s, err := scimserver.New(token)
	Expect(err).NotTo(HaveOccurred())
	Expect(s.Start("127.0.0.1:0")).To(Succeed())
	DeferCleanup(s.Stop)
	return s
}

var _ = Describe("GitOps health checks", func() {
	ctx := context.Background()

	It("gives Argo CD's Lua health check and kstatus the expected verdict on live objects in every state", func() {
		var cases []healthCase
		ns := readyTargetNamespace(ctx)
		slow := ownServer(testToken)
		// The endpoint answers discovery 1.5 s late: a target read at once has not been probed.
		slow.Faults.Add(scimserver.On(http.MethodGet, "/ServiceProviderConfig", scimserver.Fault{Latency: 1500 * time.Millisecond}))

		By("ScimTarget and ClusterScimTarget before their first probe, then Ready")
		flaky := createTarget(ctx, ns, "flaky", testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = slow.Endpoint() })
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(flaky), flaky)).To(Succeed())
		Expect(flaky.Status.Conditions).To(BeEmpty())
		cases = append(cases, checkHealth(scimv1.KindScimTarget, "progressing", flaky))
		cst := unprobedClusterTarget(ctx, "gitops", slow.Endpoint(), ns)
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cst), cst)).To(Succeed())
		Expect(cst.Status.Conditions).To(BeEmpty())
		cases = append(cases, checkHealth(scimv1.KindClusterScimTarget, "progressing", cst))
		Eventually(get(ctx, flaky)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		cases = append(cases, checkHealth(scimv1.KindScimTarget, "healthy", flaky))
		Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		cases = append(cases, checkHealth(scimv1.KindClusterScimTarget, "healthy", cst))

		By("targets whose endpoint refuses the token")
		strict := ownServer("another-token")
		refused := createTarget(ctx, ns, "refused", testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = strict.Endpoint() })
		Eventually(get(ctx, refused)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonUnauthorized))
		cases = append(cases, checkHealth(scimv1.KindScimTarget, "unauthorized", refused))
		refusedCluster := unprobedClusterTarget(ctx, "gitops-refused", strict.Endpoint(), ns)
		Eventually(get(ctx, refusedCluster)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonUnauthorized))
		cases = append(cases, checkHealth(scimv1.KindClusterScimTarget, "unauthorized", refusedCluster))

		By("ServiceIdentity Ready, suspended, stalled and expired")
		healthy := readyIdentities(ctx, ns, "acme", "gitops-healthy")[0]
		cases = append(cases, checkHealth(kindServiceIdentity, "healthy", healthy))
		suspended := newIdentity(ns, "gitops-suspended", "acme")
		suspended.Spec.Suspend = true
		Expect(k8s.Create(ctx, suspended)).To(Succeed())
		Eventually(get(ctx, suspended)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		cases = append(cases, checkHealth(kindServiceIdentity, "suspended", suspended))
		stalled := withAttributes(newIdentity(ns, "gitops-stalled", "acme"), `{"password":"hunter2"}`)
		Expect(k8s.Create(ctx, stalled)).To(Succeed())
		stalledWith(ctx, stalled, scimv1.ReasonGuardrail)
		cases = append(cases, checkHealth(kindServiceIdentity, "degraded", stalled))
		expiring := newIdentity(ns, "gitops-expired", "acme")
		expiring.Spec.TTL = scimv1.DurationOf(2 * time.Second)
		Expect(k8s.Create(ctx, expiring)).To(Succeed())
		Eventually(get(ctx, expiring), "10s").Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		cases = append(cases, checkHealth(kindServiceIdentity, "expired", expiring))

		By("a ServiceIdentity retried while its target answers 503")
		slow.Faults.Clear()
		slow.Faults.Add(scimserver.On("", "/Users", scimserver.Fault{Status: http.StatusServiceUnavailable, RetryAfter: 1, Detail: "down for maintenance"}))
		retried := newIdentity(ns, "gitops-retried", "flaky")
		Expect(k8s.Create(ctx, retried)).To(Succeed())
		Eventually(get(ctx, retried)).Should(WithTransform(func(si *scimv1.ServiceIdentity) string {
			if c := condition(si, scimv1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
				return c.Message
			}
			return ""
		}, ContainSubstring("down for maintenance")))
		cases = append(cases, checkHealth(kindServiceIdentity, "progressing", retried))
		slow.Faults.Clear()
		Eventually(get(ctx, retried)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		By("a ServiceIdentity deleted while its target answers 503, and its target deleted meanwhile")
		slow.Faults.Add(scimserver.On("", "/Users/", scimserver.Fault{Status: http.StatusServiceUnavailable, Detail: "down for maintenance"}))
		Expect(k8s.Delete(ctx, retried)).To(Succeed())
		Eventually(get(ctx, retried)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked))
		cases = append(cases, checkHealth(kindServiceIdentity, "deleting", retried))
		Expect(k8s.Delete(ctx, flaky)).To(Succeed())
		Eventually(get(ctx, flaky)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, "InUse"))
		cases = append(cases, checkHealth(scimv1.KindScimTarget, "deleting", flaky))
		slow.Faults.Clear()
		Eventually(gone(ctx, retried)).Should(BeTrue())
		Eventually(gone(ctx, flaky)).Should(BeTrue())

		By("a ClusterScimTarget deleted while an identity uses it")
		user := clusterIdentity(ns, "gitops-cluster-user", cst.Name)
		Expect(k8s.Create(ctx, user)).To(Succeed())
		Eventually(get(ctx, user)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(k8s.Delete(ctx, cst)).To(Succeed())
		Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, "InUse"))
		cases = append(cases, checkHealth(scimv1.KindClusterScimTarget, "deleting", cst))
		Expect(k8s.Delete(ctx, user)).To(Succeed())
		Eventually(gone(ctx, cst)).Should(BeTrue())

		By("a ScimTarget whose circuit breaker opened")
		guarded := fastTarget(ctx, ns, "gitops-guarded", func(t *scimv1.ScimTarget) {
			t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 1, Interval: scimv1.DurationOf(time.Hour)}
		})
		mass := readyIdentities(ctx, ns, "gitops-guarded", "gitops-mass-0", "gitops-mass-1")
		for _, si := range mass {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		Eventually(get(ctx, guarded)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonBreakerOpen))
		cases = append(cases, checkHealth(scimv1.KindScimTarget, "breaker-open", guarded))
		update(ctx, guarded, func(guarded *scimv1.ScimTarget) {
			guarded.Spec.CircuitBreaker.MaxDeletionsPerInterval = 10
		})
		for _, si := range mass {
			Eventually(gone(ctx, si)).Should(BeTrue())
		}

		By("every state of every kind was seen")
		seen := map[string]map[string]bool{}
		for _, c := range cases {
			if seen[c.kind] == nil {
				seen[c.kind] = map[string]bool{}
			}
			seen[c.kind][c.state] = true
		}
		for kind, states := range gitopsVerdicts {
			for state := range states {
				Expect(seen[kind]).To(HaveKey(state), fmt.Sprintf("%s in state %s", kind, state))
			}
		}
		writeHealthTestdata(cases)
	})
})
