package controller

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/status"
)

var (
	scimRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scim_operator_scim_requests_total",
		Help: "SCIM requests sent, by target, method and HTTP status code (0: no response; codes without a meaning of their own by class: 2xx, 4xx, ..., other).",
	}, []string{"target", "method", "code"})
	scimRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scim_operator_scim_request_duration_seconds",
		Help:    "SCIM request latency, by target and method.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	}, []string{"target", "method"})
	driftCorrections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scim_operator_drift_corrections_total",
		Help: "Accounts corrected at resync because they differed from the spec (updated) or were gone (recreated).",
	}, []string{"target", "kind"})
	orphanAccounts = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "scim_operator_orphans",
		Help: "Accounts with this cluster's externalId prefix and no ServiceIdentity, at the last scan.",
	}, []string{"target"})
	revocationLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "scim_operator_revocation_latency_seconds",
		Help:    "From the deletion of a ServiceIdentity (or of its workload) to every target confirming the account is gone.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
	})
	identityStates = prometheus.NewDesc("scim_operator_identities",
		"ServiceIdentities by state (Ready, NotReady, Stalled, Expired, Suspended, Deleting).", []string{"state"}, nil)
	deprovisionBacklog = prometheus.NewDesc("scim_operator_deprovision_backlog",
		"ServiceIdentities being deleted whose accounts are not yet deprovisioned.", nil, nil)

	states = &stateCollector{}
)

func init() {
	metrics.Registry.MustRegister(scimRequests, scimRequestDuration, driftCorrections, orphanAccounts, revocationLatency, states)
}

// statusCodes are the HTTP status codes the code label of scim_operator_scim_requests_total
// names as they are: the ones the runbooks, dashboards and SCIM (RFC 7644 §3.12) give a
// meaning to, and 0 for no response. Any other code is labelled with its class ("2xx", ...;
// "other" outside 100-599): a provider chooses its status codes, up to 999 of them, and as raw
// labels they would make a series each.
var statusCodes = []int{0, 200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 429, 500, 501, 502, 503, 504}

// statusLabels are every value the code label can take.
var statusLabels = func() []string {
	var out []string
	for _, c := range statusCodes {
		out = append(out, strconv.Itoa(c))
	}
	return append(out, "1xx", "2xx", "3xx", "4xx", "5xx", "other")
}()

// observeRequest is the SCIM client's observer for one target.
func observeRequest(target string) func(method string, status int, d time.Duration) {
	return func(method string, status int, d time.Duration) {
		scimRequests.WithLabelValues(target, methodLabel(method), statusLabel(status)).Inc()
		scimRequestDuration.WithLabelValues(target, methodLabel(method)).Observe(d.Seconds())
	}
}

// statusLabel is the code label for an HTTP status: itself when statusLabels names it, else its
// class.
func statusLabel(status int) string {
	if slices.Contains(statusCodes, status) {
		return strconv.Itoa(status)
	}
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// methodLabel is the method label: the client sends these five methods only, but the label
// set stays bounded whatever calls the observer.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return method
	}
	return "other"
}

// forgetTargetMetrics removes every series of a deleted target from the metric vectors that
// carry a target label (the collectors read the informer cache and drop it by themselves).
func forgetTargetMetrics(target string) {
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{scimRequests, scimRequestDuration, driftCorrections, orphanAccounts} {
		v.DeletePartialMatch(prometheus.Labels{"target": target})
	}
}

// stateCollector counts identities by state from the informer cache at scrape time.
type stateCollector struct{ reader atomic.Pointer[client.Reader] }

func (s *stateCollector) use(r client.Reader) { s.reader.Store(&r) }

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- identityStates
	ch <- deprovisionBacklog
	ch <- identitiesStalled
	ch <- deprovisionOldest
	ch <- ownersInactive
	ch <- reviews
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := s.reader.Load()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &scimv1.ServiceIdentityList{}
	if err := (*r).List(ctx, list, client.UnsafeDisableDeepCopy); err != nil { // read only: no copy of every identity per scrape
		return
	}
	// One pass over the identities for every identity gauge (metrics_state.go describes the
	// alerting ones).
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

// revocationClock remembers when deletions were first seen, for the revocation histogram:
// identities by UID, workloads by namespace/kind/name (their identities are deleted by the
// garbage collector a moment later).
type revocationClock struct {
	clock clock.PassiveClock
	// seen is bounded: a tenant that deletes workloads no identity ever belonged to cannot
	// grow it; an entry evicted only costs one histogram sample its precise start.
	seen *lru.Cache
	mu   sync.Mutex // makes the first mark count
}

// revocationClockSize bounds the deletions remembered for the histogram.
const revocationClockSize = 100_000

func newRevocationClock(c clock.PassiveClock) *revocationClock {
	return &revocationClock{clock: status.Clock(c), seen: lru.New(revocationClockSize)}
}

func workloadKey(namespace, kind, name string) string { return namespace + "/" + kind + "/" + name }

// mark notes that the deletion of key was seen now (the first time counts).
func (c *revocationClock) mark(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen.Get(key); !ok {
		c.seen.Add(key, c.clock.Now())
	}
}

// start is the earliest recorded deletion for the identity or the workloads that own it.
func (c *revocationClock) start(si *scimv1.ServiceIdentity) time.Time {
	var start time.Time
	if si.DeletionTimestamp != nil {
		start = si.DeletionTimestamp.Time
	}
	consider := func(key string) {
		if v, ok := c.seen.Get(key); ok {
			if at := v.(time.Time); start.IsZero() || at.Before(start) {
				start = at
			}
		}
	}
	if v, ok := c.seen.Get(string(si.UID)); ok {
		// The watch event is more precise than deletionTimestamp (whole seconds).
		start = v.(time.Time)
	}
	for _, o := range si.OwnerReferences {
		consider(workloadKey(si.Namespace, o.Kind, o.Name))
	}
	return start
}

func (c *revocationClock) forget(si *scimv1.ServiceIdentity) {
	c.seen.Remove(string(si.UID))
	for _, o := range si.OwnerReferences {
		c.seen.Remove(workloadKey(si.Namespace, o.Kind, o.Name))
	}
}
