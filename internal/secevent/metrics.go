package secevent

import "github.com/prometheus/client_golang/prometheus"

var (
	eventsDesc = prometheus.NewDesc("scim_operator_security_events_total",
		"Security Event Tokens by outcome: published (queued), dropped (queue full), delivered, "+
			"possibly_delivered (refused as invalid_request after an unanswered attempt), "+
			"refused (the receiver will not accept it), exhausted (retries ran out), abandoned (operator stopped), "+
			"given_up (kept in the outbox and not accepted within its maximum age).",
		[]string{"outcome"}, nil)
	attemptsDesc = prometheus.NewDesc("scim_operator_security_event_delivery_attempts_total",
		"Security Event Token delivery attempts by the receiver's answer: accepted, retryable (408, 429, 5xx, no answer), refused.",
		[]string{"result"}, nil)
	queuedDesc = prometheus.NewDesc("scim_operator_security_events_queued",
		"Security Event Tokens waiting for a delivery worker.", nil, nil)
)

// Collector exposes a publisher's Stats as Prometheus metrics; register it with the manager's
// registry (metrics.Registry.MustRegister(secevent.NewCollector(p))).
type Collector struct{ p *Publisher }

// NewCollector returns a collector of p's counters.
func NewCollector(p *Publisher) *Collector { return &Collector{p: p} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- eventsDesc
	ch <- attemptsDesc
	ch <- queuedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	for outcome, v := range map[string]int64{
		"published": s.Published, "dropped": s.Dropped, "delivered": s.Delivered, "possibly_delivered": s.PossiblyDelivered,
		"refused": s.Refused, "exhausted": s.Exhausted, "abandoned": s.Abandoned, "given_up": s.GivenUp,
	} {
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(v), outcome)
	}
	for result, v := range map[string]int64{
		"accepted": s.AttemptsAccepted, "retryable": s.AttemptsRetryable, "refused": s.AttemptsRefused,
	} {
		ch <- prometheus.MustNewConstMetric(attemptsDesc, prometheus.CounterValue, float64(v), result)
	}
	ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(s.Queued))
}
