package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// descString reads prometheus.Desc.String(): Desc{fqName: "...", help: "...", unit: "...",
// constLabels: {...}, variableLabels: {...}}.
var descString = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), .*variableLabels: \{([^}]*)\}\}$`)

type metric struct{ name, typ, help, labels string }

// metricsPage lists every metric the manager's own collectors describe. The type of a
// collector of the client library is its Go type; a custom collector's metrics are typed by
// the prometheus.*Value its Collect passes to MustNewConstMetric, read from the sources
// under root.
func metricsPage(root string) ([]byte, error) {
	constTypes, err := constMetricTypes(root)
	if err != nil {
		return nil, err
	}
	var ms []metric
	for _, c := range collectors() {
		ch := make(chan *prometheus.Desc, 32)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m, err := parseDesc(d)
			if err != nil {
				return nil, err
			}
			if m.typ = collectorType(c); m.typ == "" {
				if m.typ = constTypes[m.name]; m.typ == "" {
					return nil, fmt.Errorf("metric %s: no prometheus.*Value found for it under %s", m.name, root)
				}
			}
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	var rows [][]string
	for _, m := range ms {
		rows = append(rows, []string{"`" + m.name + "`", m.typ, m.labels, m.help})
	}
	var b bytes.Buffer
	b.WriteString("# Metrics\n\n")
	b.WriteString("The operator's own metrics, served on the metrics endpoint (`--metrics-bind-address`, HTTPS with\n")
	b.WriteString("authentication by default) beside controller-runtime's (`controller_runtime_*`, `workqueue_*`,\n")
	b.WriteString("`rest_client_*`) and the Go runtime's. Alerts and dashboards built on them: [metrics and alerts](../metrics.md).\n\n")
	b.Write(table([]string{"Metric", "Type", "Labels", "Help"}, rows))
	return b.Bytes(), nil
}

func parseDesc(d *prometheus.Desc) (metric, error) {
	m := descString.FindStringSubmatch(d.String())
	if m == nil {
		return metric{}, fmt.Errorf("cannot read %s (has prometheus.Desc.String changed?)", d)
	}
	name, err1 := strconv.Unquote(m[1])
	help, err2 := strconv.Unquote(m[2])
	if err1 != nil || err2 != nil {
		return metric{}, fmt.Errorf("cannot read %s", d)
	}
	labels := "-"
	if m[3] != "" {
		labels = "`" + strings.ReplaceAll(m[3], ",", "`, `") + "`"
	}
	return metric{name: name, help: help, labels: labels}, nil
}

// collectorType is the type of a collector of the client library. Gauge is asked before
// Counter (a Gauge has a Counter's methods too); a lone Histogram and Summary cannot be told
// apart by their methods, and the operator has no Summary.
func collectorType(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec, prometheus.Gauge:
		return "gauge"
	case prometheus.Counter:
		return "counter"
	case *prometheus.HistogramVec, prometheus.Histogram:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	}
	return ""
}

// constMetricTypes maps the metric names of prometheus.NewDesc("name", ...) variables to the
// type their MustNewConstMetric(desc, prometheus.XValue, ...) calls give them.
func constMetricTypes(root string) (map[string]string, error) {
	descNames := map[string]string{}  // variable -> metric name
	valueTypes := map[string]string{} // variable -> counter|gauge|untyped
	err := walkDirs(root, func(f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.ValueSpec:
				for i, name := range x.Names {
					if i < len(x.Values) {
						if call, ok := x.Values[i].(*ast.CallExpr); ok && selName(call.Fun) == "NewDesc" && len(call.Args) > 0 {
							if lit, ok := call.Args[0].(*ast.BasicLit); ok {
								descNames[name.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			case *ast.CallExpr:
				if selName(x.Fun) == "MustNewConstMetric" && len(x.Args) > 1 {
					if id, ok := x.Args[0].(*ast.Ident); ok {
						valueTypes[id.Name] = strings.ToLower(strings.TrimSuffix(selName(x.Args[1]), "Value"))
					}
				}
			}
			return true
		})
	})
	types := map[string]string{}
	for v, name := range descNames {
		types[name] = valueTypes[v]
	}
	return types, err
}

func selName(e ast.Expr) string {
	if s, ok := e.(*ast.SelectorExpr); ok {
		return s.Sel.Name
	}
	return ""
}
