// Package scimserver is the reference SCIM 2.0 service provider used by tests, benchmarks and
// `make dev`: github.com/elimity-com/scim serves the protocol, an in-memory store keeps Users
// and Groups, and Faults wraps it to produce the failures real providers produce.
package scimserver

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/scim2/filter-parser/v2"
)

type record struct {
	id       string
	attrs    map[string]any
	version  int
	created  time.Time
	modified time.Time
	seq      int
}

// Store keeps the resources of one resource type in memory.
type Store struct {
	mu      sync.Mutex
	kind    string // "User" or "Group"
	unique  string // attribute that must be unique (case-insensitively), e.g. userName
	records map[string]*record
	next    int
}

func newStore(kind, unique string) *Store {
	return &Store{kind: kind, unique: unique, records: map[string]*record{}}
}

func (s *Store) toResource(rec *record) scim.Resource {
	created, modified := rec.created, rec.modified
	res := scim.Resource{
		ID:         rec.id,
		Attributes: deepCopy(rec.attrs).(map[string]any),
		Meta:       scim.Meta{Created: &created, LastModified: &modified, Version: fmt.Sprintf("W/%q", strconv.Itoa(rec.version))},
	}
	if ext, ok := rec.attrs["externalId"].(string); ok {
		res.ExternalID = optional.NewString(ext)
	}
	return res
}

func (s *Store) conflict(attrs map[string]any, exceptID string) bool {
	if s.unique == "" {
		return false
	}
	v, _ := attrs[s.unique].(string)
	if v == "" {
		return false
	}
	for id, rec := range s.records {
		if id == exceptID {
			continue
		}
		if other, _ := rec.attrs[s.unique].(string); strings.EqualFold(other, v) {
			return true
		}
	}
	return false
}

func notFound(id string) error {
	return scimerrors.ScimError{Status: http.StatusNotFound, Detail: fmt.Sprintf("Resource %s not found.", id)}
}

func checkIfMatch(r *http.Request, rec *record) error {
	want := r.Header.Get("If-Match")
	if want == "" || want == "*" {
		return nil
	}
	if want != fmt.Sprintf("W/%q", strconv.Itoa(rec.version)) {
		return scimerrors.ScimError{Status: http.StatusPreconditionFailed, Detail: "The resource was modified since it was read (ETag mismatch)."}
	}
	return nil
}

// Create implements scim.ResourceHandler.
func (s *Store) Create(_ *http.Request, attributes scim.ResourceAttributes) (scim.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	attrs := map[string]any(attributes)
	if s.conflict(attrs, "") {
		e := scimerrors.ScimErrorUniqueness
		e.Detail = fmt.Sprintf("%s %q is already in use.", s.unique, attrs[s.unique])
		return scim.Resource{}, e
	}
	s.next++
	now := time.Now().UTC()
	rec := &record{id: fmt.Sprintf("%s-%06d", strings.ToLower(s.kind), s.next), attrs: attrs, version: 1, created: now, modified: now, seq: s.next}
	if s.kind == "User" {
		if _, ok := attrs["active"]; !ok {
			attrs["active"] = true
		}
	}
	s.records[rec.id] = rec
	return s.toResource(rec), nil
}

// Get implements scim.ResourceHandler.
func (s *Store) Get(_ *http.Request, id string) (scim.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[id]
	if !ok {
		return scim.Resource{}, notFound(id)
	}
	return s.toResource(rec), nil
}

// GetAll implements scim.ResourceHandler: filtered, in creation order, paged.
func (s *Store) GetAll(_ *http.Request, params scim.ListRequestParams) (scim.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The filter is judged on a shallow view of each record; only matches are copied and
	// sorted, so a lookup by externalId or userName costs one pass over the records rather than
	// a deep copy and a sort of all of them (real providers index these attributes).
	var recs []*record
	attr, value, indexed := eqLookup(params)
	for _, rec := range s.records {
		if indexed {
			// What a provider's index on id, externalId or userName answers, without the
			// generic filter evaluation (userName is caseExact false in RFC 7643).
			got, _ := rec.attrs[attr].(string)
			if attr == "id" {
				got = rec.id
			}
			if got != value && (attr != "userName" || !strings.EqualFold(got, value)) {
				continue
			}
		} else if params.FilterValidator != nil {
			view := make(map[string]any, len(rec.attrs)+1)
			for k, v := range rec.attrs {
				view[k] = v
			}
			view["id"] = rec.id
			if params.FilterValidator.PassesFilter(view) != nil {
				continue
			}
		}
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	matched := make([]scim.Resource, 0, len(recs))
	for _, rec := range recs {
		matched = append(matched, s.toResource(rec))
	}
	page := scim.Page{TotalResults: len(matched), Resources: []scim.Resource{}}
	start := max(params.StartIndex, 1) - 1
	if start < len(matched) && params.Count > 0 {
		end := min(start+params.Count, len(matched))
		page.Resources = matched[start:end]
	}
	return page, nil
}

// Replace implements scim.ResourceHandler.
func (s *Store) Replace(r *http.Request, id string, attributes scim.ResourceAttributes) (scim.Resource, error) {
	return s.write(r, id, func(map[string]any) (map[string]any, error) { return attributes, nil })
}

// Delete implements scim.ResourceHandler.
func (s *Store) Delete(r *http.Request, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.writable(r, id); err != nil {
		return err
	}
	delete(s.records, id)
	return nil
}

// writable returns the record for a write: it must exist and match If-Match. Callers hold mu.
func (s *Store) writable(r *http.Request, id string) (*record, error) {
	rec, ok := s.records[id]
	if !ok {
		return nil, notFound(id)
	}
	if err := checkIfMatch(r, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// write replaces a record's attributes with what change makes of a copy of them, keeping
// uniqueness and bumping the version.
func (s *Store) write(r *http.Request, id string, change func(attrs map[string]any) (map[string]any, error)) (scim.Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.writable(r, id)
	if err != nil {
		return scim.Resource{}, err
	}
	attrs, err := change(deepCopy(rec.attrs).(map[string]any))
	if err != nil {
		return scim.Resource{}, err
	}
	if s.conflict(attrs, id) {
		return scim.Resource{}, scimerrors.ScimErrorUniqueness
	}
	rec.attrs = attrs
	rec.version++
	rec.modified = time.Now().UTC()
	return s.toResource(rec), nil
}

// Patch implements scim.ResourceHandler (add, replace, remove; value filters with eq).
func (s *Store) Patch(r *http.Request, id string, ops []scim.PatchOperation) (scim.Resource, error) {
	return s.write(r, id, func(attrs map[string]any) (map[string]any, error) {
		for _, op := range ops {
			if err := applyPatch(attrs, op); err != nil {
				return nil, err
			}
		}
		return attrs, nil
	})
}

// inOrder lists the records in creation order; the caller holds mu.
func (s *Store) inOrder() []*record {
	recs := make([]*record, 0, len(s.records))
	for _, rec := range s.records {
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	return recs
}

// Len is the number of stored resources.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}

// All returns a copy of every stored resource's attributes (with "id"), in creation order.
func (s *Store) All() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.inOrder()
	out := make([]map[string]any, 0, len(recs))
	for _, rec := range recs {
		m := deepCopy(rec.attrs).(map[string]any)
		m["id"] = rec.id
		out = append(out, m)
	}
	return out
}

// Put stores attributes directly (test setup, e.g. an account made by hand on the target).
func (s *Store) Put(attrs map[string]any) string {
	res, err := s.Create(nil, deepCopy(attrs).(map[string]any))
	if err != nil {
		panic(err)
	}
	return res.ID
}

// Mutate changes a stored resource directly, as an administrator on the target would.
func (s *Store) Mutate(id string, fn func(attrs map[string]any)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[id]
	if !ok {
		return false
	}
	fn(rec.attrs)
	rec.version++
	rec.modified = time.Now().UTC()
	return true
}

// Remove deletes a stored resource directly.
func (s *Store) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, id)
}

func applyPatch(attrs map[string]any, op scim.PatchOperation) error {
	invalid := func(detail string) error {
		e := scimerrors.ScimErrorInvalidPath
		e.Detail = detail
		return e
	}
	opName := strings.ToLower(op.Op)
	if op.Path == nil {
		values, ok := op.Value.(map[string]any)
		if !ok || opName == "remove" {
			return invalid("an operation without path needs an object value")
		}
		for k, v := range values {
			if ext, isExt := v.(map[string]any); isExt && strings.HasPrefix(k, "urn:") {
				target, _ := attrs[k].(map[string]any)
				if target == nil {
					target = map[string]any{}
				}
				for ek, ev := range ext {
					target[ek] = ev
				}
				attrs[k] = target
				continue
			}
			setValue(attrs, k, v, opName == "add")
		}
		return nil
	}
	container := attrs
	ap := op.Path.AttributePath
	if ap.URIPrefix != nil {
		ext, _ := attrs[*ap.URIPrefix].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
			attrs[*ap.URIPrefix] = ext
		}
		container = ext
	}
	name := ap.AttributeName
	if op.Path.ValueExpression != nil {
		list, _ := container[name].([]any)
		var kept []any
		for _, item := range list {
			m, _ := item.(map[string]any)
			if m != nil && exprMatches(op.Path.ValueExpression, m) {
				if opName == "remove" {
					continue
				}
				if sub := op.Path.SubAttribute; sub != nil {
					m[*sub] = op.Value
				}
			}
			kept = append(kept, item)
		}
		container[name] = kept
		if kept == nil {
			delete(container, name)
		}
		return nil
	}
	if ap.SubAttribute != nil {
		inner, _ := container[name].(map[string]any)
		if inner == nil {
			inner = map[string]any{}
			container[name] = inner
		}
		if opName == "remove" {
			delete(inner, *ap.SubAttribute)
		} else {
			inner[*ap.SubAttribute] = op.Value
		}
		return nil
	}
	if opName == "remove" {
		delete(container, name)
		return nil
	}
	setValue(container, name, op.Value, opName == "add")
	return nil
}

// setValue sets a value; "add" on a multi-valued attribute appends the values not yet present.
func setValue(attrs map[string]any, name string, value any, add bool) {
	newList, isList := value.([]any)
	oldList, wasList := attrs[name].([]any)
	if !add || !isList || !wasList {
		attrs[name] = value
		return
	}
	for _, v := range newList {
		dup := false
		for _, o := range oldList {
			if fmt.Sprint(o) == fmt.Sprint(v) {
				dup = true
				break
			}
		}
		if !dup {
			oldList = append(oldList, v)
		}
	}
	attrs[name] = oldList
}

// exprMatches evaluates `attr eq "value"` (and and/or of them) against a multi-valued item.
// eqLookup recognises a filter `id|externalId|userName eq "<string>"`, the lookups clients
// make most, which real providers serve from an index.
func eqLookup(params scim.ListRequestParams) (attr, value string, ok bool) {
	if params.FilterValidator == nil {
		return "", "", false
	}
	e, isAttr := params.FilterValidator.GetFilter().(*filter.AttributeExpression)
	if !isAttr || e.Operator != filter.EQ || e.AttributePath.SubAttribute != nil || e.AttributePath.URIPrefix != nil {
		return "", "", false
	}
	v, isString := e.CompareValue.(string)
	if !isString {
		return "", "", false
	}
	for _, a := range []string{"id", "externalId", "userName"} {
		if strings.EqualFold(e.AttributePath.AttributeName, a) {
			return a, v, true
		}
	}
	return "", "", false
}

func exprMatches(e filter.Expression, item map[string]any) bool {
	switch t := e.(type) {
	case *filter.AttributeExpression:
		if t.Operator != filter.EQ {
			return false
		}
		return fmt.Sprint(item[t.AttributePath.AttributeName]) == fmt.Sprint(t.CompareValue)
	case *filter.LogicalExpression:
		l, r := exprMatches(t.Left, item), exprMatches(t.Right, item)
		if t.Operator == filter.AND {
			return l && r
		}
		return l || r
	}
	return false
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, vv := range t {
			m[k] = deepCopy(vv)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, vv := range t {
			l[i] = deepCopy(vv)
		}
		return l
	case []map[string]any:
		l := make([]any, len(t))
		for i, vv := range t {
			l[i] = deepCopy(vv)
		}
		return l
	}
	return v
}
