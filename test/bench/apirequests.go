package main

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
)

// apiRequests counts the requests kube-apiserver served, by verb and resource
// (apiserver_request_total), to say where a phase's API server time went.
type apiRequests map[string]float64

// apiserverRequests scrapes kube-apiserver's request counters; nil when they cannot be read.
func (b *bench) apiserverRequests() apiRequests {
	c, err := rest.HTTPClientFor(b.cp.Config)
	if err != nil {
		return nil
	}
	resp, err := c.Get(strings.TrimSuffix(b.cp.Config.Host, "/") + "/metrics")
	if err != nil {
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	out := apiRequests{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels := line[strings.Index(line, "{")+1 : strings.LastIndex(line, "}")]
		verb, resource, sub := label(labels, "verb"), label(labels, "resource"), label(labels, "subresource")
		if sub != "" {
			resource += "/" + sub
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		out[verb+" "+resource] += v
	}
	return out
}

// label reads one label's value from a Prometheus text line's label set.
func label(labels, name string) string {
	_, rest, ok := strings.Cut(","+labels, ","+name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// addAPIRequests prints the requests kube-apiserver served in a phase, per identity, largest
// first (those under 0.05 per identity left out).
func (b *bench) addAPIRequests(phase string, before, after apiRequests, n int) {
	if before == nil || after == nil {
		return
	}
	keys := make([]string, 0, len(after))
	for k := range after {
		if (after[k]-before[k])/float64(n) >= 0.05 && !strings.HasPrefix(k, "WATCH") {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, c string) int { return int((after[c] - before[c]) - (after[a] - before[a])) })
	for _, k := range keys {
		b.res.add(fmt.Sprintf("  %s: API server requests per identity, %s", phase, k), (after[k]-before[k])/float64(n), "req", "")
	}
}
