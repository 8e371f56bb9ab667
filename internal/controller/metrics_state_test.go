package controller

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// seriesCount is the number of series of a metric whose labels include labels.
func seriesCount(name string, labels map[string]string) int { return len(seriesOf(name, labels)) }

var _ = Describe("Metrics for alerts", func() {
	ctx := context.Background()

	It("exports target readiness, breaker state, stalled identities and the oldest pending deprovisioning", func() {
		ns := newNamespace(ctx)
		t := fastTarget(ctx, ns, "watched", func(t *scimv1.ScimTarget) {
			t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 1, Interval: scimv1.DurationOf(time.Hour)}
		})
		key := targets.Key(scimv1.KindScimTarget, ns, "watched")
		ready := func() float64 { return metricValue("scim_operator_target_ready", map[string]string{"target": key}) }
		open := func() float64 {
			return metricValue("scim_operator_circuit_breaker_open", map[string]string{"target": key})
		}
		Eventually(ready).Should(Equal(1.0))
		Expect(seriesCount("scim_operator_target_ready", map[string]string{"target": key, "reason": scimv1.ReasonReady})).To(Equal(1))
		Expect(seriesCount("scim_operator_circuit_breaker_open", map[string]string{"target": key})).To(Equal(1))
		Expect(open()).To(Equal(0.0))

		By("an identity stalled by a guardrail is counted in its namespace, with the reason")
		stalled := func() float64 {
			return metricValue("scim_operator_identities_stalled", map[string]string{"identity_namespace": ns, "reason": scimv1.ReasonGuardrail})
		}
		Expect(stalled()).To(Equal(0.0))
		si := withAttributes(newIdentity(ns, "stalls", "watched"), `{"password":"hunter2"}`)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		stalledWith(ctx, si, scimv1.ReasonGuardrail)
		Eventually(stalled).Should(Equal(1.0))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(stalled).Should(Equal(0.0))

		By("a mass deletion past the breaker opens it and leaves a deprovisioning pending")
		ids := readyIdentities(ctx, ns, "watched", "kept-0", "kept-1")
		for _, si := range ids {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		Eventually(open).Should(Equal(1.0))
		var pending *scimv1.ServiceIdentity
		Eventually(func() int {
			pending = nil
			for _, si := range ids {
				if err := k8s.Get(ctx, client.ObjectKeyFromObject(si), si); err == nil {
					pending = si
				}
			}
			if pending == nil {
				return 0
			}
			return 1
		}).Should(Equal(1))
		// The gauge is the age of the oldest deletion in the cluster: at least this one's, which
		// the breaker holds.
		Eventually(func() bool {
			oldest := metricValue("scim_operator_deprovision_oldest_seconds", nil)
			age := time.Since(pending.DeletionTimestamp.Time).Seconds()
			return age >= 2 && oldest >= age-1
		}, "10s").Should(BeTrue())

		By("releasing the breaker closes it and drains the deprovisioning")
		update(ctx, t, func(t *scimv1.ScimTarget) {
			t.Spec.CircuitBreaker.MaxDeletionsPerInterval = 10
		})
		Eventually(gone(ctx, pending)).Should(BeTrue())
		Eventually(open).Should(Equal(0.0))

		By("a token the endpoint refuses makes the target not Ready, with the reason")
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, keyOf(ns, "watched-token"), secret)).To(Succeed())
		secret.Data = map[string][]byte{"token": []byte("not-the-token")}
		Expect(k8s.Update(ctx, secret)).To(Succeed())
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonUnauthorized))
		Eventually(func() int {
			return seriesCount("scim_operator_target_ready", map[string]string{"target": key, "reason": scimv1.ReasonUnauthorized})
		}).Should(Equal(1))
		Expect(ready()).To(Equal(0.0))
		Expect(seriesCount("scim_operator_target_ready", map[string]string{"target": key})).To(Equal(1), "one series per target")
	})
})
