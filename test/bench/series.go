package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// seriesRecorder scrapes the operator's /metrics every interval during the run and keeps the
// scim_operator_* samples as time series, as Prometheus would store them (histograms as
// _bucket{le}, _sum and _count), so the Grafana dashboard's queries can be evaluated on a real
// run (hack/dashboard renders them: make dashboard-png).
type seriesRecorder struct {
	mu     sync.Mutex
	series map[string]*recordedSeries
	phases []phase
	start  time.Time
	stop   context.CancelFunc
	done   chan struct{}
}

type recordedSeries struct {
	Labels map[string]string `json:"labels"`
	// Points are [unix milliseconds, value].
	Points [][2]float64 `json:"points"`
}

// phase is a step of the bench, for the picture's annotations.
type phase struct {
	Name  string `json:"name"`
	Start int64  `json:"startMs"`
}

// seriesFile is what -metrics-series writes.
type seriesFile struct {
	Source          string            `json:"source"`
	ScrapeInterval  string            `json:"scrapeInterval"`
	StartMs         int64             `json:"startMs"`
	EndMs           int64             `json:"endMs"`
	Phases          []phase           `json:"phases"`
	Series          []*recordedSeries `json:"series"`
	BenchParameters map[string]any    `json:"benchParameters"`
}

// recorder is set by -metrics-series; step() notes phases on it.
var recorder *seriesRecorder

func (r *seriesRecorder) notePhase(name string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases = append(r.phases, phase{Name: name, Start: time.Now().UnixMilli()})
}

// begin scrapes url every interval until finish.
func (r *seriesRecorder) begin(url string, interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done, r.start = cancel, make(chan struct{}), time.Now()
	r.series = map[string]*recordedSeries{}
	go func() {
		defer close(r.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			r.scrapeOnce(ctx, url)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (r *seriesRecorder) scrapeOnce(ctx context.Context, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the operator is starting or stopping
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return
	}
	now := float64(time.Now().UnixMilli())
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, f := range families {
		if !strings.HasPrefix(name, "scim_operator_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, s := range flatten(name, m) {
				key := seriesKey(s.labels)
				rs := r.series[key]
				if rs == nil {
					rs = &recordedSeries{Labels: s.labels}
					r.series[key] = rs
				}
				rs.Points = append(rs.Points, [2]float64{now, s.value})
			}
		}
	}
}

type flatSample struct {
	labels map[string]string
	value  float64
}

// flatten turns one metric into the samples Prometheus would ingest from it.
func flatten(name string, m *dto.Metric) []flatSample {
	base := map[string]string{}
	for _, lp := range m.GetLabel() {
		base[lp.GetName()] = lp.GetValue()
	}
	with := func(metric string, extra ...string) map[string]string {
		l := map[string]string{"__name__": metric}
		for k, v := range base {
			l[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	switch {
	case m.Counter != nil:
		return []flatSample{{with(name), m.Counter.GetValue()}}
	case m.Gauge != nil:
		return []flatSample{{with(name), m.Gauge.GetValue()}}
	case m.Histogram != nil:
		h := m.Histogram
		out := []flatSample{{with(name + "_sum"), h.GetSampleSum()}, {with(name + "_count"), float64(h.GetSampleCount())}}
		for _, b := range h.GetBucket() {
			out = append(out, flatSample{with(name+"_bucket", "le", model.SampleValue(b.GetUpperBound()).String()), float64(b.GetCumulativeCount())})
		}
		return append(out, flatSample{with(name+"_bucket", "le", model.SampleValue(math.Inf(1)).String()), float64(h.GetSampleCount())})
	case m.Untyped != nil:
		return []flatSample{{with(name), m.Untyped.GetValue()}}
	}
	return nil
}

func seriesKey(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%q,", k, l[k])
	}
	return sb.String()
}

// finish stops scraping and writes the series to path.
func (r *seriesRecorder) finish(path string, params map[string]any) error {
	if r.stop == nil {
		return nil
	}
	r.stop()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	out := seriesFile{Source: "make bench (test/bench), operator /metrics", ScrapeInterval: "250ms",
		StartMs: r.start.UnixMilli(), EndMs: time.Now().UnixMilli(), Phases: r.phases, BenchParameters: params}
	keys := make([]string, 0, len(r.series))
	for k := range r.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Series = append(out.Series, r.series[k])
	}
	data, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
