package metrics

import (
	"context"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var (
	identityStates = prometheus.NewDesc("scim_operator_identities",
		"ServiceIdentities by state (Ready, NotReady, Stalled, Expired, Suspended, Deleting).", []string{"state"}, nil)
	deprovisionBacklog = prometheus.NewDesc("scim_operator_deprovision_backlog",
		"ServiceIdentities being deleted whose accounts are not yet deprovisioned.", nil, nil)
	targetReady = prometheus.NewDesc("scim_operator_target_ready",
		"1 when the target's Ready condition is True, else 0; reason is the Ready condition's reason (Unknown before the first probe).",
		[]string{"target", "reason"}, nil)
	breakerOpen = prometheus.NewDesc("scim_operator_circuit_breaker_open",
		"1 while the target's circuit breaker pauses deprovisioning (Stalled=True, reason CircuitBreakerOpen), else 0.",
		[]string{"target"}, nil)
	identitiesStalled = prometheus.NewDesc("scim_operator_identities_stalled",
		"ServiceIdentities with Stalled=True (needing a human), by namespace and the Stalled condition's reason.",
		[]string{"identity_namespace", "reason"}, nil)
	deprovisionOldest = prometheus.NewDesc("scim_operator_deprovision_oldest_seconds",
		"Age of the oldest ServiceIdentity being deleted whose accounts are not yet deprovisioned (0: none).",
		nil, nil)

	ownersInactive = prometheus.NewDesc("scim_operator_identities_owner_inactive",
		"ServiceIdentities whose owner the owner directory shows missing or inactive, by namespace.",
		[]string{"identity_namespace"}, nil)
	reviews = prometheus.NewDesc("scim_operator_identities_review",
		"ServiceIdentities under review by state: due (attestation due within reviewDueWindow) or overdue (suspended until attested), by namespace.",
		[]string{"identity_namespace", "state"}, nil)
)

// reviewDueWindow: an identity whose next review is this close counts as due.
const reviewDueWindow = 7 * 24 * time.Hour

// stateCollector counts identities by state from the informer cache at scrape time.
type stateCollector struct{ reader client.Reader }

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- identityStates
	ch <- deprovisionBacklog
	ch <- identitiesStalled
	ch <- deprovisionOldest
	ch <- ownersInactive
	ch <- reviews
	ch <- targetReady
	ch <- breakerOpen
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.collectTargets(ctx, ch)
	list := &scimv1.ServiceIdentityList{}
	if err := s.reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil { // read only: no copy of every identity per scrape
		return
	}
	// One pass over the identities for every identity gauge.
	now := time.Now()
	counts := map[string]float64{"Ready": 0, "NotReady": 0, "Stalled": 0, "Expired": 0, "Suspended": 0, "Deleting": 0}
	type nsReason struct{ namespace, reason string }
	stalled := map[nsReason]float64{}
	inactive := map[string]float64{}
	review := map[nsReason]float64{} // reason: due or overdue
	var oldest time.Duration
	for i := range list.Items {
		si := &list.Items[i]
		counts[identityState(si)]++
		if !si.DeletionTimestamp.IsZero() {
			oldest = max(oldest, now.Sub(si.DeletionTimestamp.Time))
			continue
		}
		if c := meta.FindStatusCondition(si.Status.Conditions, scimv1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
			stalled[nsReason{si.Namespace, c.Reason}]++
		}
		if o := si.Status.Owner; o != nil && (o.State == scimv1.OwnerInactive || o.State == scimv1.OwnerMissing) {
			inactive[si.Namespace]++
		}
		if rv := si.Status.Review; rv != nil {
			switch until := rv.NextReviewAt.Sub(now); {
			case until <= 0:
				review[nsReason{si.Namespace, "overdue"}]++
			case until <= reviewDueWindow:
				review[nsReason{si.Namespace, "due"}]++
			}
		}
	}
	for n, v := range inactive {
		ch <- prometheus.MustNewConstMetric(ownersInactive, prometheus.GaugeValue, v, n)
	}
	for k, v := range review {
		ch <- prometheus.MustNewConstMetric(reviews, prometheus.GaugeValue, v, k.namespace, k.reason)
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(identityStates, prometheus.GaugeValue, n, state)
	}
	ch <- prometheus.MustNewConstMetric(deprovisionBacklog, prometheus.GaugeValue, counts["Deleting"])
	for k, n := range stalled {
		ch <- prometheus.MustNewConstMetric(identitiesStalled, prometheus.GaugeValue, n, k.namespace, k.reason)
	}
	ch <- prometheus.MustNewConstMetric(deprovisionOldest, prometheus.GaugeValue, oldest.Seconds())
}

func identityState(si *scimv1.ServiceIdentity) string {
	conds := si.Status.Conditions
	switch {
	case !si.DeletionTimestamp.IsZero():
		return "Deleting"
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionExpired):
		return "Expired"
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionStalled):
		return "Stalled"
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionReady) && si.Spec.Suspend:
		return "Suspended"
	case meta.IsStatusConditionTrue(conds, scimv1.ConditionReady):
		return "Ready"
	}
	return "NotReady"
}

// collectTargets reports each target's readiness and breaker.
func (s *stateCollector) collectTargets(ctx context.Context, ch chan<- prometheus.Metric) {
	var all []scimv1.GenericTarget
	namespaced := &scimv1.ScimTargetList{}
	if err := s.reader.List(ctx, namespaced, client.UnsafeDisableDeepCopy); err == nil {
		for i := range namespaced.Items {
			all = append(all, &namespaced.Items[i])
		}
	}
	cluster := &scimv1.ClusterScimTargetList{}
	if err := s.reader.List(ctx, cluster, client.UnsafeDisableDeepCopy); err == nil {
		for i := range cluster.Items {
			all = append(all, &cluster.Items[i])
		}
	}
	for _, t := range all {
		key := targets.Key(t.TargetKind(), t.GetNamespace(), t.GetName())
		conds := t.TargetStatus().Conditions
		ready, reason := 0.0, "Unknown"
		if c := meta.FindStatusCondition(conds, scimv1.ConditionReady); c != nil {
			reason = c.Reason
			if c.Status == "True" {
				ready = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(targetReady, prometheus.GaugeValue, ready, key, reason)
		open := 0.0
		if c := meta.FindStatusCondition(conds, scimv1.ConditionStalled); c != nil && c.Status == "True" && c.Reason == scimv1.ReasonBreakerOpen {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(breakerOpen, prometheus.GaugeValue, open, key)
	}
}
