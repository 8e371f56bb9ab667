package scimserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	"github.com/scim2/filter-parser/v2"
)

// dialect sits between authentication and the protocol library: it serves the
// ServiceProviderConfig, applies the RFC rules the library leaves out (attributes /
// excludedAttributes, returned "never"), and the quirks of the profile in effect, on the
// request (filters, paging, PATCH limits) and on the response (status, headers, body).
func (s *Server) dialect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, ok := strings.CutPrefix(r.URL.Path, BasePath)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		q := s.Quirks()
		if path == "/ServiceProviderConfig" && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/scim+json")
			_ = json.NewEncoder(w).Encode(s.spc(q))
			return
		}
		endpoint, id, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		store := s.types["/"+endpoint]
		if store == nil || strings.HasPrefix(id, ".search") {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodPatch && q.PatchUnsupported {
			writeError(w, http.StatusNotImplemented, "", "PATCH is not implemented.")
			return
		}
		if r.Method == http.MethodPatch && store.kind == "Group" && q.MaxMemberOps > 0 {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if n := memberChanges(body); n > q.MaxMemberOps {
				writeError(w, http.StatusBadRequest, "invalidValue",
					fmt.Sprintf("At most %d membership changes are allowed in a single request, got %d.", q.MaxMemberOps, n))
				return
			}
		}
		if r.Method == http.MethodGet && id == "" {
			var done bool
			if r, done = s.listRequest(w, r, q, store); done {
				return
			}
		}
		query := r.URL.Query()
		attributes, excluded := splitList(query.Get("attributes")), splitList(query.Get("excludedAttributes"))
		if q.IgnoresAttributes {
			attributes, excluded = nil, nil
		}
		cursor := r.Context().Value(cursorKey{}) != nil
		reshapeBody := len(attributes) > 0 || len(excluded) > 0 || q.NoETags || q.TotalResultsPageSize || cursor
		noContent := r.Method == http.MethodPatch && q.PatchNoContent
		dropLocation := r.Method == http.MethodPost && q.NoLocation
		if !reshapeBody && !noContent && !dropLocation {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		status, body := rec.Code, rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if dropLocation {
			w.Header().Del("Location")
		}
		if q.NoETags {
			w.Header().Del("Etag")
		}
		if status/100 == 2 && reshapeBody && len(body) > 0 {
			body = reshape(body, store.core.ID, attributes, excluded, q, cursor)
			w.Header().Del("Content-Length")
		}
		if noContent && status == http.StatusOK {
			w.Header().Del("Content-Type")
			w.Header().Del("Content-Length")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

// listRequest applies the filter and paging quirks to a list request. It answers the request
// itself (done) when the quirks say so, or returns the request to serve.
//
// The filter is parsed and checked here and handed to the store in the request's context
// (the protocol library does not see it): the library refuses extension attributes inside
// and/or expressions, which RFC 7644 §3.4.2.2 allows.
func (s *Server) listRequest(w http.ResponseWriter, r *http.Request, q Quirks, store *Store) (*http.Request, bool) {
	query := r.URL.Query()
	changed := false
	var parsed filter.Expression
	if f := strings.TrimSpace(query.Get("filter")); f != "" {
		expr, err := filter.ParseFilter([]byte(f))
		if err == nil && !store.matcher().valid(expr) {
			writeError(w, http.StatusBadRequest, "invalidFilter", "The filter names an attribute the resource type does not have.")
			return r, true
		}
		query.Del("filter")
		changed = true
		switch {
		case err != nil && q.MalformedFilter == FilterFailure400:
			writeError(w, http.StatusBadRequest, "invalidFilter", "The specified filter syntax is invalid.")
			return r, true
		case err != nil && q.MalformedFilter == FilterFailureUnfiltered:
			// Served as if no filter had been sent.
		case err != nil && q.MalformedFilter == FilterFailureEmpty:
			w.Header().Set("Content-Type", "application/scim+json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"schemas":      []string{"urn:ietf:params:scim:api:messages:2.0:ListResponse"},
				"totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []any{},
			})
			return r, true
		case err != nil && q.MalformedFilter == FilterFailure500:
			writeError(w, http.StatusInternalServerError, "", "Internal server error.")
			return r, true
		case err == nil && q.EqOnly && !onlyEq(expr):
			writeError(w, http.StatusBadRequest, "invalidFilter", "Only the eq operator (joined by and) is supported in filters.")
			return r, true
		case err == nil:
			parsed = expr
		}
	}
	if q.IgnoresStartIndex && query.Has("startIndex") {
		query.Del("startIndex")
		changed = true
	}
	ctx := r.Context()
	if q.CursorPaging && query.Has("cursor") {
		// RFC 9865: the cursor this server issues is the index of the page's first resource.
		start := 1
		if c := query.Get("cursor"); c != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(c, "at-"))
			if !strings.HasPrefix(c, "at-") || err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, "invalidCursor", "The cursor was not issued by this server.")
				return r, true
			}
			start = n
		}
		query.Del("cursor")
		query.Set("startIndex", strconv.Itoa(start))
		ctx = context.WithValue(ctx, cursorKey{}, true)
		changed = true
	}
	if q.MaxPageSize > 0 {
		if n, err := strconv.Atoi(query.Get("count")); err != nil || n > q.MaxPageSize {
			query.Set("count", strconv.Itoa(q.MaxPageSize))
			changed = true
		}
	}
	if !changed {
		return r, false
	}
	r = r.Clone(context.WithValue(ctx, filterKey{}, parsed))
	r.URL.RawQuery = query.Encode()
	return r, false
}

// filterKey holds the parsed filter of a list request in its context (nil: no filter).
type filterKey struct{}

// cursorKey marks a list request paged by cursor (RFC 9865): its answer gets nextCursor.
type cursorKey struct{}

// reshape rewrites a resource or list body: projection, no meta.version, page-size totals.
func reshape(body []byte, coreURN string, attributes, excluded []string, q Quirks, cursor bool) []byte {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if d.Decode(&m) != nil {
		return body
	}
	one := func(res map[string]any) map[string]any {
		if q.NoETags {
			if meta, ok := res["meta"].(map[string]any); ok {
				delete(meta, "version")
			}
		}
		return project(res, coreURN, attributes, excluded)
	}
	if list, ok := m["Resources"].([]any); ok {
		for i, item := range list {
			if res, ok := item.(map[string]any); ok {
				list[i] = one(res)
			}
		}
		if cursor {
			// The next page's cursor while more resources follow (RFC 9865 §2.2).
			start, _ := strconv.Atoi(fmt.Sprint(m["startIndex"]))
			total, _ := strconv.Atoi(fmt.Sprint(m["totalResults"]))
			if next := max(start, 1) + len(list); len(list) > 0 && next <= total {
				m["nextCursor"] = "at-" + strconv.Itoa(next)
			}
		}
		if q.TotalResultsPageSize {
			m["totalResults"] = len(list)
		}
	} else if _, isList := m["totalResults"]; isList {
		if q.TotalResultsPageSize {
			m["totalResults"] = 0
		}
	} else {
		m = one(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// memberChanges counts the members a PATCH body adds or removes: each value of an
// add/replace/remove on members, or one for a remove by filter.
func memberChanges(body []byte) int {
	var req struct {
		Operations []struct {
			Op    string `json:"op"`
			Path  string `json:"path"`
			Value any    `json:"value"`
		}
	}
	if json.Unmarshal(body, &req) != nil {
		return 0
	}
	n := 0
	for _, op := range req.Operations {
		path := strings.ToLower(op.Path)
		switch {
		case strings.HasPrefix(path, "members["):
			n++
		case path == "members":
			if list, ok := op.Value.([]any); ok {
				n += len(list)
			} else {
				n++
			}
		case path == "":
			if m, ok := op.Value.(map[string]any); ok {
				if list, ok := getFold(m, "members").([]any); ok {
					n += len(list)
				}
			}
		}
	}
	return n
}
