package controller

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/metrics"
	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// Attacks of issue 20 item 6: a hostile provider (or tenant) makes the operator keep state that
// grows with the input it chooses.

// labelValues returns the distinct values of label over the series of the metric that carry labels.
func labelValues(name, label string, labels map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range seriesOf(name, labels) {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && !seen[lp.GetValue()] {
				seen[lp.GetValue()] = true
				out = append(out, lp.GetValue())
			}
		}
	}
	return out
}

// targetMetrics are the metric vectors with a target label that the operator writes itself.
var targetMetrics = []string{
	"scim_operator_scim_requests_total", "scim_operator_scim_request_duration_seconds",
	"scim_operator_drift_corrections_total", "scim_operator_orphans",
}

var _ = Describe("Attacks on the operator's memory", func() {
	ctx := context.Background()

	It("attack: a hostile provider answers with a new status code every time, up to 999", func() {
		ns := newNamespace(ctx)
		var armed atomic.Bool
		var next atomic.Int64
		var mu sync.Mutex
		sent := map[int]bool{}
		srv, backend := hostileProvider(nil)
		backend.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if !armed.Load() {
				return nil
			}
			// 500..999: every answer a status code not seen before, and one the operator retries.
			code := 500 + int(next.Add(1)-1)%500
			mu.Lock()
			sent[code] = true
			mu.Unlock()
			return &scimserver.Fault{Status: code, Detail: "hostile"}
		})
		distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(sent) }
		t := createTarget(ctx, ns, "hostile", testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = srv.URL + scimserver.BasePath })
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		key := targets.Key(scimv1.KindScimTarget, ns, "hostile")
		onTarget := map[string]string{"target": key}

		armed.Store(true)
		var ids []*scimv1.ServiceIdentity
		for i := range 10 {
			si := newIdentity(ns, fmt.Sprintf("id-%d", i), "hostile")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			ids = append(ids, si)
		}
		Eventually(distinct, "60s").Should(BeNumerically(">=", 100))
		codes := labelValues("scim_operator_scim_requests_total", "code", onTarget)
		GinkgoWriter.Printf("%d distinct status codes sent, %d code labels on %s: %v\n", distinct(), len(codes), key, codes)
		// Raw codes would make one series per code (and per method): up to 500 here.
		Expect(len(codes)).To(BeNumerically("<=", len(metrics.CodeLabels())), "code labels: %v", codes)
		Expect(metrics.CodeLabels()).To(ContainElements(codes))

		By("deleting the target removes every series it had")
		armed.Store(false)
		for _, si := range ids {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		for _, si := range ids {
			Eventually(gone(ctx, si), "30s").Should(BeTrue())
		}
		Expect(seriesCount("scim_operator_scim_requests_total", onTarget)).NotTo(BeZero())
		Expect(k8s.Delete(ctx, t)).To(Succeed())
		Eventually(gone(ctx, t), "30s").Should(BeTrue())
		Eventually(func(g Gomega) {
			for _, name := range targetMetrics {
				g.Expect(seriesCount(name, onTarget)).To(BeZero(), name)
			}
		}).Should(Succeed())
	})

	It("attack: a hostile cluster provider lists accounts naming identities in namespaces it does not serve", func() {
		served, other := newNamespace(ctx), newNamespace(ctx)
		srv, backend := hostileProvider(nil)
		cst := clusterTarget(ctx, "lister", []string{served}, func(c *scimv1.ClusterScimTarget) {
			c.Spec.Endpoint = srv.URL + scimserver.BasePath
		})
		tenant := clusterIdentity(served, "tenant", cst.Name)
		Expect(k8s.Create(ctx, tenant)).To(Succeed())
		Eventually(get(ctx, tenant)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		// An identity elsewhere that has nothing to do with this target.
		victim := newIdentity(other, "victim", "elsewhere")
		Expect(k8s.Create(ctx, victim)).To(Succeed())

		By("accounts whose externalIds name identities the target does not serve are not handed to them")
		backend.Users.Put(map[string]any{"userName": "crafted." + other, "externalId": externalIDOf(other, "victim"), "active": true})
		s := sweepNow(ctx, cst)
		Expect(s.Flagged).To(BeZero(), "the victim identity was flagged (and woken) by a list it has no part in")

		By("the target's own identity is still flagged when its account drifts")
		tampered := false
		for _, u := range backend.Users.All() {
			if u["externalId"] == externalIDOf(served, "tenant") {
				tampered = backend.Users.Mutate(u["id"].(string), func(a map[string]any) { a["active"] = false })
			}
		}
		Expect(tampered).To(BeTrue())
		s = sweepNow(ctx, cst)
		Expect(s.Flagged).To(BeEquivalentTo(1))
		Eventually(func() any {
			for _, u := range backend.Users.All() {
				if u["externalId"] == externalIDOf(served, "tenant") {
					return u["active"]
				}
			}
			return nil
		}).Should(Equal(true))
	})
})
