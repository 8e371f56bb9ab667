package scimserver

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Fault is what the wrapper does to one request instead of (or around) serving it.
type Fault struct {
	// Latency delays the request before anything else.
	Latency time.Duration
	// Status, when non-zero, answers with this status and a SCIM error body instead of serving.
	Status int
	// RetryAfter is sent as Retry-After (seconds) with Status.
	RetryAfter int
	// Detail is the SCIM error detail sent with Status.
	Detail string
	// ScimType is the SCIM error keyword sent with Status.
	ScimType string
	// ResetBeforeServing closes the connection without serving the request.
	ResetBeforeServing bool
	// ResetAfterServing serves the request (the store changes) and closes the connection
	// without sending the response: the client cannot know whether it succeeded.
	ResetAfterServing bool
	// Body, when set, replaces the response body (malformed or truncated JSON) with status 200.
	Body string
	// ContentType, when set, replaces the Content-Type of the response.
	ContentType string
	// Arrived, when set, is called when the request arrives, before it is served (a test
	// kills the client there: it sent the request, nothing happened yet).
	Arrived func()
	// Served, when set, is called once the request was served (the store changed) and before
	// the response is sent (a test kills the client there: the change is made, the client
	// never learns it).
	Served func()
}

// Rule decides the fault for a request; nil or a zero Fault serves it normally.
type Rule func(r *http.Request) *Fault

// Faults injects failures in front of the reference server.
type Faults struct {
	mu    sync.Mutex
	rules []Rule
}

// Add installs a rule; rules are consulted in order and the first non-nil fault wins.
func (f *Faults) Add(rule Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, rule)
}

// Clear removes every rule.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Once wraps a rule so it fires for the first matching request only.
func Once(rule Rule) Rule {
	var mu sync.Mutex
	fired := false
	return func(r *http.Request) *Fault {
		mu.Lock()
		defer mu.Unlock()
		if fired {
			return nil
		}
		if ft := rule(r); ft != nil {
			fired = true
			return ft
		}
		return nil
	}
}

// On returns a rule that applies fault to requests with this method whose path contains kind.
func On(method, kind string, fault Fault) Rule {
	return func(r *http.Request) *Fault {
		if (method == "" || r.Method == method) && (kind == "" || containsSegment(r.URL.Path, kind)) {
			ft := fault
			return &ft
		}
		return nil
	}
}

func containsSegment(path, seg string) bool {
	for i := 0; i+len(seg) <= len(path); i++ {
		if path[i:i+len(seg)] == seg {
			return true
		}
	}
	return false
}

// pick consults the rules outside the lock, so a rule may block one request (hold it in
// flight) without holding up the others.
func (f *Faults) pick(r *http.Request) *Fault {
	f.mu.Lock()
	rules := f.rules
	f.mu.Unlock()
	for _, rule := range rules {
		if ft := rule(r); ft != nil {
			return ft
		}
	}
	return nil
}

func (f *Faults) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ft := f.pick(r)
		if ft == nil {
			next.ServeHTTP(w, r)
			return
		}
		if ft.Latency > 0 {
			select {
			case <-time.After(ft.Latency):
			case <-r.Context().Done():
				return
			}
		}
		if ft.Arrived != nil {
			ft.Arrived()
		}
		switch {
		case ft.Served != nil:
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			ft.Served()
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		case ft.ResetBeforeServing:
			reset(w)
		case ft.ResetAfterServing:
			next.ServeHTTP(httptest.NewRecorder(), r)
			reset(w)
		case ft.Status != 0:
			if ft.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ft.RetryAfter))
			}
			writeError(w, ft.Status, ft.ScimType, ft.Detail)
		case ft.Body != "":
			ct := ft.ContentType
			if ct == "" {
				ct = "application/scim+json"
			}
			w.Header().Set("Content-Type", ct)
			_, _ = w.Write([]byte(ft.Body))
		default:
			if ft.ContentType != "" {
				w.Header().Set("Content-Type", ft.ContentType)
			}
			next.ServeHTTP(w, r)
		}
	})
}

// reset closes the client connection without a response.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
