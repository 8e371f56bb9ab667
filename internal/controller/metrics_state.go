package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Gauges for alerting, read from the informer cache at scrape time like scim_operator_identities
// (metrics.go), so they cost nothing between scrapes and cannot drift from the API server.
// Targets are labelled `target` with the key the other per-target metrics use
// ("ScimTarget/<namespace>/<name>", "ClusterScimTarget/<name>"); identities are counted per
// namespace under `identity_namespace`, not `namespace`, which a scrape's own target labels
// would overwrite.
var (
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

	alertStates = &alertStateCollector{}
)

// reviewDueWindow: an identity whose next review is this close counts as due.
const reviewDueWindow = 7 * 24 * time.Hour

func init() {
	metrics.Registry.MustRegister(alertStates)
}

// alertStateCollector reports the targets' gauges through the reader scim_operator_identities
// uses (set by Setup), without deep copies. The identities' alerting gauges
// (scim_operator_identities_stalled, scim_operator_deprovision_oldest_seconds) come from
// stateCollector's one pass over the identities (metrics.go).
type alertStateCollector struct{}

func (c *alertStateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- targetReady
	ch <- breakerOpen
}

func (c *alertStateCollector) Collect(ch chan<- prometheus.Metric) {
	r := states.reader.Load()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var all []scimv1.GenericTarget
	namespaced := &scimv1.ScimTargetList{}
	if err := (*r).List(ctx, namespaced, client.UnsafeDisableDeepCopy); err == nil {
		for i := range namespaced.Items {
			all = append(all, &namespaced.Items[i])
		}
	}
	cluster := &scimv1.ClusterScimTargetList{}
	if err := (*r).List(ctx, cluster, client.UnsafeDisableDeepCopy); err == nil {
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
