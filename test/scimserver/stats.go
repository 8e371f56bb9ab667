package scimserver

import (
	"net/http"
	"strings"
	"sync"
)

// stats counts requests by method and what they address: "Users" (a list), "Users?filter"
// (a filtered query), "Users/{id}" (one resource), "ServiceProviderConfig"...
type stats struct {
	mu     sync.Mutex
	counts map[string]int
}

func (s *Server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := strings.TrimPrefix(r.URL.Path, BasePath+"/")
		if i := strings.IndexByte(kind, '/'); i >= 0 {
			kind = kind[:i] + "/{id}"
		} else if r.URL.Query().Has("filter") {
			kind += "?filter"
		}
		s.stats.mu.Lock()
		if s.stats.counts == nil {
			s.stats.counts = map[string]int{}
		}
		s.stats.counts[r.Method+" "+kind]++
		s.stats.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// Requests returns the number of requests seen for a method and address, e.g. ("GET", "Users/{id}").
func (s *Server) Requests(method, kind string) int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return s.stats.counts[method+" "+kind]
}

// RequestCounts returns a copy of all counters, keyed "METHOD Kind".
func (s *Server) RequestCounts() map[string]int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	out := make(map[string]int, len(s.stats.counts))
	for k, v := range s.stats.counts {
		out[k] = v
	}
	return out
}

// ResetCounts zeroes the counters.
func (s *Server) ResetCounts() {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	s.stats.counts = nil
}
