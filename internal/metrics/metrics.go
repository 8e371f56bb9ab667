// Package metrics holds the operator's Prometheus metrics: SCIM requests, drift corrections,
// orphans and revocation latency as instruments the controllers are handed, and the state
// gauges (identities, targets, breakers, reviews) read from the cache at scrape time. Nothing
// is registered until Register; there are no package globals.
package metrics

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Metrics are the instruments the controllers record into. A nil *Metrics records nothing
// (reconcilers built by hand in unit tests).
type Metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	drift           *prometheus.CounterVec
	orphans         *prometheus.GaugeVec
	revocation      prometheus.Histogram
	stampsGuarded   prometheus.Gauge
	states          *stateCollector
	// Revocations remembers when deletions were first seen, for the revocation histogram
	// (shared by the workload and identity controllers and the Deprovisioner).
	Revocations *RevocationClock
}

// New makes the instruments; reader lists identities and targets at scrape time (the cache)
// and c tells the revocation clock's time (nil: the real clock).
func New(reader client.Reader, c clock.PassiveClock) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scim_operator_scim_requests_total",
			Help: "SCIM requests sent, by target, method and HTTP status code (0: no response; codes without a meaning of their own by class: 2xx, 4xx, ..., other).",
		}, []string{"target", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scim_operator_scim_request_duration_seconds",
			Help:    "SCIM request latency, by target and method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"target", "method"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scim_operator_drift_corrections_total",
			Help: "Accounts corrected at resync because they differed from the spec (updated) or were gone (recreated).",
		}, []string{"target", "kind"}),
		orphans: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scim_operator_orphans",
			Help: "Accounts with this cluster's externalId prefix and no ServiceIdentity, at the last scan.",
		}, []string{"target"}),
		revocation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scim_operator_revocation_latency_seconds",
			Help:    "From the deletion of a ServiceIdentity (or of its workload) to every target confirming the account is gone.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
		stampsGuarded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scim_operator_creation_stamps_guarded",
			Help: "1 while --creation-stamps-guarded is set and the creation-stamps and status-writers admission policies are found in force (a new identity's account on a ClusterScimTarget is then created before its status is written); 0 otherwise.",
		}),
		states: &stateCollector{reader: reader},
	}
	m.Revocations = newRevocationClock(c, m.revocation)
	return m
}

// Register registers every collector with reg. A collector of the same name registered by an
// earlier Setup in this process (a manager restarted in tests) is replaced: the newest
// instruments are the ones served.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.requestDuration, m.drift, m.orphans, m.revocation, m.stampsGuarded, m.states} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
			reg.Unregister(already.ExistingCollector)
			if err := reg.Register(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// StampsGuarded sets scim_operator_creation_stamps_guarded.
func (m *Metrics) StampsGuarded(guarded bool) {
	if m == nil {
		return
	}
	v := 0.0
	if guarded {
		v = 1
	}
	m.stampsGuarded.Set(v)
}

// statusCodes are the HTTP status codes the code label of scim_operator_scim_requests_total
// names as they are: the ones the runbooks, dashboards and SCIM (RFC 7644 §3.12) give a
// meaning to, and 0 for no response. Any other code is labelled with its class ("2xx", ...;
// "other" outside 100-599): a provider chooses its status codes, up to 999 of them, and as raw
// labels they would make a series each.
var statusCodes = []int{0, 200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 429, 500, 501, 502, 503, 504}

// statusLabels is every value the code label can take.
var statusLabels = func() []string {
	var out []string
	for _, c := range statusCodes {
		out = append(out, strconv.Itoa(c))
	}
	return append(out, "1xx", "2xx", "3xx", "4xx", "5xx", "other")
}()

// Observer records the SCIM requests sent to target (scim.Client's Observer).
func (m *Metrics) Observer(target string) func(method string, status int, d time.Duration) {
	if m == nil {
		return nil
	}
	return func(method string, status int, d time.Duration) {
		m.requests.WithLabelValues(target, methodLabel(method), statusLabel(status)).Inc()
		m.requestDuration.WithLabelValues(target, methodLabel(method)).Observe(d.Seconds())
	}
}

// DriftCorrected counts an account on target corrected at resync: kind is "updated" or
// "recreated".
func (m *Metrics) DriftCorrected(target, kind string) {
	if m != nil {
		m.drift.WithLabelValues(target, kind).Inc()
	}
}

// Orphans records how many orphans target's last sweep found.
func (m *Metrics) Orphans(target string, n int) {
	if m != nil {
		m.orphans.WithLabelValues(target).Set(float64(n))
	}
}

func statusLabel(status int) string {
	if slices.Contains(statusCodes, status) {
		return strconv.Itoa(status)
	}
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return method
	}
	return "other"
}

// ForgetTarget removes the series of a deleted target, so a tenant creating and deleting
// targets cannot grow the registry.
func (m *Metrics) ForgetTarget(target string) {
	if m == nil {
		return
	}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.requests, m.requestDuration, m.drift, m.orphans} {
		v.DeletePartialMatch(prometheus.Labels{"target": target})
	}
}

// CodeLabels are every value the code label of scim_operator_scim_requests_total can take.
func CodeLabels() []string { return slices.Clone(statusLabels) }
