package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// seriesOf returns the series of a metric in the controller-runtime registry whose labels
// include labels.
func seriesOf(name string, labels map[string]string) []*dto.Metric {
	families, err := crmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				out = append(out, m)
			}
		}
	}
	return out
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == k && lp.GetValue() == v }) {
			return false
		}
	}
	return true
}

// metricValue sums the matching series of a metric: counters and gauges by value, histograms
// by sample count.
func metricValue(name string, labels map[string]string) float64 {
	total := 0.0
	for _, m := range seriesOf(name, labels) {
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// fastTarget is a Ready target with the shortest targets.ResyncInterval the API allows; specs that
// need a resync sooner request one with requestResync.
func fastTarget(ctx context.Context, ns, name string, mutate ...func(*scimv1.ScimTarget)) *scimv1.ScimTarget {
	t := createTarget(ctx, ns, name, testToken, append([]func(*scimv1.ScimTarget){func(t *scimv1.ScimTarget) {
		t.Spec.ResyncInterval = scimv1.DurationOf(30 * time.Second)
	}}, mutate...)...)
	Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	return t
}

// requestResync sets the resync annotation to a new value: the identity's accounts are
// checked against the target at once.
func requestResync(ctx context.Context, si *scimv1.ServiceIdentity) {
	update(ctx, si, func(si *scimv1.ServiceIdentity) {
		if si.Annotations == nil {
			si.Annotations = map[string]string{}
		}
		si.Annotations[scimv1.ResyncRequestedAnnotation] = time.Now().Format(time.RFC3339Nano)
	})
}

var _ = Describe("Drift, orphans, circuit breaker and metrics", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	It("restores owned attributes changed on the target, flips active back and recreates a deleted account", func() {
		fastTarget(ctx, ns, "fast")
		key := targets.Key(scimv1.KindScimTarget, ns, "fast")
		si := newIdentity(ns, "drifty", "fast")
		si.Spec.DisplayName = "The real name"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := si.Status.Targets[0].ID
		updatedBefore := metricValue("scim_operator_drift_corrections_total", map[string]string{"target": key, "kind": "updated"})

		scimSrv.Users.Mutate(id, func(a map[string]any) { a["displayName"] = "tampered"; a["active"] = false; a["title"] = "not ours" })
		requestResync(ctx, si)
		Eventually(func() []any { a := accountOf(ns, "drifty"); return []any{a["displayName"], a["active"], a["title"]} }, "5s").
			Should(Equal([]any{"The real name", true, "not ours"}))
		Eventually(func() float64 {
			return metricValue("scim_operator_drift_corrections_total", map[string]string{"target": key, "kind": "updated"})
		}).Should(Equal(updatedBefore + 1))

		recreatedBefore := metricValue("scim_operator_drift_corrections_total", map[string]string{"target": key, "kind": "recreated"})
		scimSrv.Users.Remove(id)
		requestResync(ctx, si)
		Eventually(accountsWithExternalID(ns, "drifty"), "5s").Should(HaveLen(1))
		Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) string { return s.Status.Targets[0].ID },
			Equal(accountOf(ns, "drifty")["id"])))
		Eventually(func() float64 {
			return metricValue("scim_operator_drift_corrections_total", map[string]string{"target": key, "kind": "recreated"})
		}).Should(Equal(recreatedBefore + 1))
		Eventually(eventReasons(ctx, ns, "drifty")).Should(ContainElement("DriftCorrected"))
	})

	DescribeTable("reports orphans and applies the policy, never touching accounts without our prefix",
		func(policy scimv1.OrphanPolicy, want string) {
			// Two accounts with this cluster's prefix and no identity; one foreign account.
			// userNames that sort first, so they are among the names the status shows.
			orphanA := scimSrv.Users.Put(map[string]any{"userName": "000-ghost-a." + ns, "externalId": externalIDOf(ns, "ghost-a"), "active": true})
			orphanB := scimSrv.Users.Put(map[string]any{"userName": "000-ghost-b." + ns, "externalId": externalIDOf(ns, "ghost-b"), "active": true})
			foreign := scimSrv.Users.Put(map[string]any{"userName": "foreign." + ns, "externalId": "other-cluster/" + ns + "/x", "active": true})
			t := fastTarget(ctx, ns, "scan", func(t *scimv1.ScimTarget) {
				t.Spec.Orphans = &scimv1.Orphans{Policy: policy, Interval: scimv1.DurationOf(time.Hour)} // one scan
			})
			si := newIdentity(ns, "alive", "scan")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

			// A namespaced target judges the accounts of its own namespace only: exactly the two
			// ghosts, whatever other specs left on the shared server.
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
				g.Expect(t.Status.Orphans).NotTo(BeNil())
				g.Expect(t.Status.Orphans.UserNames).To(ConsistOf("000-ghost-a."+ns, "000-ghost-b."+ns))
				g.Expect(t.Status.Orphans.Count).To(Equal(int32(2)), fmt.Sprintf("%+v", *t.Status.Orphans))
			}, "10s").Should(Succeed())
			Eventually(eventReasons(ctx, ns, "scan")).Should(ContainElement("OrphansFound"))
			Expect(metricValue("scim_operator_orphans", map[string]string{"target": targets.Key(scimv1.KindScimTarget, ns, "scan")})).To(Equal(2.0))

			for _, id := range []string{orphanA, orphanB} {
				Eventually(func() string {
					for _, u := range scimSrv.Users.All() {
						if u["id"] == id {
							return fmt.Sprintf("present active=%v", u["active"])
						}
					}
					return "absent"
				}).Should(Equal(want), id)
			}
			for _, u := range scimSrv.Users.All() {
				if u["id"] == foreign {
					Expect(u["active"]).To(BeTrue())
				}
			}
			Expect(accountOf(ns, "alive")["active"]).To(BeTrue())
			for _, id := range []string{orphanA, orphanB, foreign} {
				scimSrv.Users.Remove(id) // do not leak into other specs' scans
			}
		},
		Entry("Report leaves them alone", scimv1.OrphanPolicyReport, "present active=true"),
		Entry("Deactivate sets active=false", scimv1.OrphanPolicyDeactivate, "present active=false"),
		Entry("Delete removes them", scimv1.OrphanPolicyDelete, "absent"),
	)

	It("pauses deprovisioning past the circuit breaker and resumes when released", func() {
		t := fastTarget(ctx, ns, "guarded", func(t *scimv1.ScimTarget) {
			t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 2, Interval: scimv1.DurationOf(time.Hour)}
		})
		ids := readyIdentities(ctx, ns, "guarded", "mass-0", "mass-1", "mass-2", "mass-3", "mass-4")
		for _, si := range ids {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		remaining := func() int {
			n := 0
			for _, si := range ids {
				n += len(accountsWithExternalID(ns, si.Name)())
			}
			return n
		}
		Eventually(remaining).Should(Equal(3))
		Consistently(remaining, "2s").Should(Equal(3))
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonBreakerOpen))
		Expect(condition(t, scimv1.ConditionStalled).Message).To(ContainSubstring("maxDeletionsPerInterval=2"))
		waiting := 0
		for _, si := range ids {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(si), si); err == nil {
				Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer))
				waiting++
			}
		}
		Expect(waiting).To(Equal(3))

		update(ctx, t, func(t *scimv1.ScimTarget) {
			t.Annotations = map[string]string{scimv1.BreakerReleaseAnnotation: "released-by-test"}
		})
		// Two more go through at once; the breaker holds the last one until the next release.
		Eventually(remaining).Should(Equal(1))
		update(ctx, t, func(t *scimv1.ScimTarget) {
			t.Spec.CircuitBreaker.MaxDeletionsPerInterval = 10
		})
		Eventually(remaining).Should(Equal(0))
		for _, si := range ids {
			Eventually(gone(ctx, si)).Should(BeTrue())
		}
		Eventually(get(ctx, t)).ShouldNot(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue))
	})

	It("exports revocation latency, request and state metrics", func() {
		readyTargetNs := readyTargetNamespace(ctx)
		// The registry is shared with every other spec: counters are read for this spec's own
		// target, and the unlabelled ones compared before and after.
		onAcme := func(labels map[string]string) map[string]string {
			labels["target"] = targets.Key(scimv1.KindScimTarget, readyTargetNs, "acme")
			return labels
		}
		readyGauge := func() float64 { return metricValue("scim_operator_identities", map[string]string{"state": "Ready"}) }
		before := metricValue("scim_operator_revocation_latency_seconds", nil)
		posts := metricValue("scim_operator_scim_requests_total", onAcme(map[string]string{"method": "POST", "code": "201"}))
		readyBefore := readyGauge()
		si := newIdentity(readyTargetNs, "measured", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(metricValue("scim_operator_scim_requests_total", onAcme(map[string]string{"method": "POST", "code": "201"}))).To(Equal(posts + 1))
		Eventually(readyGauge).Should(Equal(readyBefore + 1))
		deletes := metricValue("scim_operator_scim_request_duration_seconds", onAcme(map[string]string{"method": "DELETE"}))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Eventually(func() float64 { return metricValue("scim_operator_revocation_latency_seconds", nil) }).Should(Equal(before + 1))
		Expect(metricValue("scim_operator_scim_request_duration_seconds", onAcme(map[string]string{"method": "DELETE"}))).To(Equal(deletes + 1))
		Eventually(readyGauge).Should(Equal(readyBefore))
	})
})
