// Package scimserver is the reference SCIM 2.0 service provider used by tests, benchmarks and
// `make dev`: github.com/elimity-com/scim serves the protocol, an in-memory store keeps Users
// and Groups, and Faults wraps it to produce the failures real providers produce.
package scimserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
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
	kind    string // "User", "Group" or "Agent"
	unique  string // attribute that must be unique (case-insensitively), e.g. userName
	records map[string]*record
	next    int
	hidden  []string // attributes never returned (RFC 7643 returned "never"), e.g. password
	srv     *Server  // quirks and group clean-up
	core    schema.Schema
	exts    []schema.Schema
	// byUnique indexes the records by their unique attribute, lower-cased (a real provider's
	// index): a uniqueness check costs a map lookup, not a pass over every record.
	byUnique map[string]map[string]bool
	// byExternalID indexes the records by externalId (case-exact).
	byExternalID map[string]map[string]bool
}

func newStore(kind, unique string, srv *Server, core schema.Schema, exts ...schema.Schema) *Store {
	return &Store{kind: kind, unique: unique, records: map[string]*record{}, srv: srv, core: core, exts: exts,
		byUnique: map[string]map[string]bool{}, byExternalID: map[string]map[string]bool{}}
}

// keys are a record's index keys: its unique attribute lower-cased, and its externalId.
type keys struct{ unique, external string }

func (s *Store) keysOf(attrs map[string]any) keys {
	ext, _ := attrs["externalId"].(string)
	return keys{unique: s.uniqueKey(attrs), external: ext}
}

// index moves record id from the index entries of was to those of now. Callers hold mu.
func (s *Store) index(id string, was, now keys) {
	move(s.byUnique, id, was.unique, now.unique)
	move(s.byExternalID, id, was.external, now.external)
}

// uniqueKey is the index key of attributes: their unique attribute, lower-cased ("" for none).
func (s *Store) uniqueKey(attrs map[string]any) string {
	if s.unique == "" {
		return ""
	}
	v, _ := attrs[s.unique].(string)
	return strings.ToLower(v)
}

// move moves id from idx's entry was to its entry now ("": none).
func move(idx map[string]map[string]bool, id, was, now string) {
	if was == now {
		return
	}
	if ids := idx[was]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(idx, was)
		}
	}
	if now == "" {
		return
	}
	if idx[now] == nil {
		idx[now] = map[string]bool{}
	}
	idx[now][id] = true
}

// version is the record's ETag: a weak revision counter, or a strong hash of its
// attributes under the ETagBodyHash quirk.
func (s *Store) version(rec *record) string {
	if s.srv.Quirks().ETagBodyHash {
		b, _ := json.Marshal(rec.attrs) // map keys are sorted: the same attributes hash the same
		sum := sha256.Sum256(b)
		return strconv.Quote(hex.EncodeToString(sum[:10]))
	}
	return fmt.Sprintf("W/%q", strconv.Itoa(rec.version))
}

func (s *Store) toResource(rec *record) scim.Resource {
	created, modified := rec.created, rec.modified
	attrs := deepCopy(rec.attrs).(map[string]any)
	for _, h := range s.hidden {
		for k := range attrs {
			if strings.EqualFold(k, h) {
				delete(attrs, k)
			}
		}
	}
	res := scim.Resource{
		ID:         rec.id,
		Attributes: attrs,
		Meta:       scim.Meta{Created: &created, LastModified: &modified, Version: s.version(rec)},
	}
	if ext, ok := rec.attrs["externalId"].(string); ok {
		res.ExternalID = optional.NewString(ext)
	}
	return res
}

func (s *Store) conflict(attrs map[string]any, exceptID string) bool {
	key := s.uniqueKey(attrs)
	if key == "" {
		return false
	}
	for id := range s.byUnique[key] {
		if id != exceptID {
			return true
		}
	}
	return false
}

func notFound(id string) error {
	return scimerrors.ScimError{Status: http.StatusNotFound, Detail: fmt.Sprintf("Resource %s not found.", id)}
}

func (s *Store) checkIfMatch(r *http.Request, rec *record) error {
	if r == nil {
		return nil
	}
	want := r.Header.Get("If-Match")
	if want == "" || want == "*" || s.srv.Quirks().NoETags {
		return nil
	}
	if want != s.version(rec) {
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
	if s.kind == "User" || s.kind == "Agent" {
		if _, ok := attrs["active"]; !ok {
			attrs["active"] = true
		}
	}
	s.records[rec.id] = rec
	s.index(rec.id, keys{}, s.keysOf(attrs))
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

// matcher evaluates filters on this store's resources under the quirks in effect.
func (s *Store) matcher() matcher {
	return matcher{core: s.core, exts: s.exts, caseSensitive: s.srv.Quirks().CaseSensitiveEq}
}

// GetAll implements scim.ResourceHandler: filtered, in creation order, paged. The filter
// comes parsed from the dialect layer (the request's context) or from the library.
func (s *Store) GetAll(r *http.Request, params scim.ListRequestParams) (scim.Page, error) {
	var expr filter.Expression
	if r != nil {
		expr, _ = r.Context().Value(filterKey{}).(filter.Expression)
	}
	if expr == nil && params.FilterValidator != nil {
		expr = params.FilterValidator.GetFilter()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The filter is judged on a shallow view of each record; only matches are copied and
	// sorted, so a lookup by externalId or userName costs one pass over the records rather than
	// a deep copy and a sort of all of them (real providers index these attributes).
	var recs []*record
	m := s.matcher()
	caseSensitive := m.caseSensitive
	attr, value, indexed := s.eqLookup(expr)
	prefixAttr, prefix, byPrefix := s.swLookup(expr)
	candidates := s.records
	if indexed && attr == "externalId" {
		candidates = make(map[string]*record, len(s.byExternalID[value]))
		for id := range s.byExternalID[value] {
			candidates[id] = s.records[id]
		}
	}
	for _, rec := range candidates {
		if byPrefix {
			// `externalId sw "..."`, a sweep's filter: a plain string comparison.
			got, _ := rec.attrs[prefixAttr].(string)
			if !strings.HasPrefix(got, prefix) {
				continue
			}
		} else if indexed {
			// What a provider's index on id, externalId or the unique attribute (userName,
			// caseExact false in RFC 7643) answers, without the generic filter evaluation.
			got, _ := rec.attrs[attr].(string)
			if attr == "id" {
				got = rec.id
			}
			if got != value && (attr != s.unique || caseSensitive || !strings.EqualFold(got, value)) {
				continue
			}
		} else if expr != nil {
			view := make(map[string]any, len(rec.attrs)+1)
			for k, v := range rec.attrs {
				view[k] = v
			}
			view["id"] = rec.id
			if !m.match(expr, view) {
				continue
			}
		}
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	// Only the page asked for is copied out.
	page := scim.Page{TotalResults: len(recs), Resources: []scim.Resource{}}
	start := max(params.StartIndex, 1) - 1
	if start < len(recs) && params.Count > 0 {
		for _, rec := range recs[start:min(start+params.Count, len(recs))] {
			page.Resources = append(page.Resources, s.toResource(rec))
		}
	}
	return page, nil
}

// Replace implements scim.ResourceHandler: the attributes replace the resource's (or, under
// the PutMerges quirk, are merged into them).
func (s *Store) Replace(r *http.Request, id string, attributes scim.ResourceAttributes) (scim.Resource, error) {
	merge := s.srv.Quirks().PutMerges
	return s.write(r, id, func(old map[string]any) (map[string]any, error) {
		if !merge {
			return attributes, nil
		}
		for k, v := range attributes {
			old[k] = v
		}
		return old, nil
	})
}

// Delete implements scim.ResourceHandler.
func (s *Store) Delete(r *http.Request, id string) error {
	s.mu.Lock()
	if _, err := s.writable(r, id); err != nil {
		s.mu.Unlock()
		return err
	}
	s.index(id, s.keysOf(s.records[id].attrs), keys{})
	delete(s.records, id)
	s.mu.Unlock()
	s.deleted(id)
	return nil
}

// deleted removes a deleted member from the groups (see Server.memberDeleted).
func (s *Store) deleted(id string) {
	if s.srv != nil && s.kind != "Group" {
		s.srv.memberDeleted(id)
	}
}

// removeMemberEverywhere drops a member from every group that lists it.
func (s *Store) removeMemberEverywhere(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.records {
		members, _ := rec.attrs["members"].([]any)
		kept := slices.DeleteFunc(slices.Clone(members), func(m any) bool {
			mm, _ := m.(map[string]any)
			return mm != nil && mm["value"] == id
		})
		if len(kept) == len(members) {
			continue
		}
		rec.attrs["members"] = kept
		rec.version++
		rec.modified = time.Now().UTC()
	}
}

// writable returns the record for a write: it must exist and match If-Match. Callers hold mu.
func (s *Store) writable(r *http.Request, id string) (*record, error) {
	rec, ok := s.records[id]
	if !ok {
		return nil, notFound(id)
	}
	if err := s.checkIfMatch(r, rec); err != nil {
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
	s.index(id, s.keysOf(rec.attrs), s.keysOf(attrs))
	rec.attrs = attrs
	rec.version++
	rec.modified = time.Now().UTC()
	return s.toResource(rec), nil
}

// Patch implements scim.ResourceHandler (add, replace, remove; value filters with eq).
func (s *Store) Patch(r *http.Request, id string, ops []scim.PatchOperation) (scim.Resource, error) {
	wipe := s.srv.Quirks().RemoveValueListWipes
	return s.write(r, id, func(attrs map[string]any) (map[string]any, error) {
		for _, op := range ops {
			if err := applyPatch(attrs, op, wipe); err != nil {
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
	was := s.keysOf(rec.attrs)
	fn(rec.attrs)
	s.index(id, was, s.keysOf(rec.attrs))
	rec.version++
	rec.modified = time.Now().UTC()
	return true
}

// Remove deletes a stored resource directly (as an administrator on the target would: a
// deleted User leaves its groups unless the StaleMembers quirk is on).
func (s *Store) Remove(id string) {
	s.mu.Lock()
	rec, ok := s.records[id]
	if ok {
		s.index(id, s.keysOf(rec.attrs), keys{})
	}
	delete(s.records, id)
	s.mu.Unlock()
	if ok {
		s.deleted(id)
	}
}

// applyPatch applies one operation. A remove on a multi-valued attribute without a filter
// but with a value list (Entra's form for members) removes the listed values, or every
// value when wipe is set (the RemoveValueListWipes quirk).
func applyPatch(attrs map[string]any, op scim.PatchOperation, wipe bool) error {
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
		listed, isList := op.Value.([]any)
		current, isMulti := container[name].([]any)
		if wipe || !isList || !isMulti {
			delete(container, name)
			return nil
		}
		kept := slices.DeleteFunc(slices.Clone(current), func(item any) bool {
			for _, l := range listed {
				lm, _ := l.(map[string]any)
				im, _ := item.(map[string]any)
				if lm != nil && im != nil && fmt.Sprint(lm["value"]) == fmt.Sprint(im["value"]) {
					return true
				}
			}
			return false
		})
		if len(kept) == 0 {
			delete(container, name)
		} else {
			container[name] = kept
		}
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

// eqLookup recognises a filter `id|externalId|<unique> eq "<string>"`, the lookups clients
// make most, which real providers serve from an index.
func (s *Store) eqLookup(expr filter.Expression) (attr, value string, ok bool) {
	e, isAttr := expr.(*filter.AttributeExpression)
	if !isAttr || e.Operator != filter.EQ || e.AttributePath.SubAttribute != nil || e.AttributePath.URIPrefix != nil {
		return "", "", false
	}
	v, isString := e.CompareValue.(string)
	if !isString {
		return "", "", false
	}
	for _, a := range []string{"id", "externalId", s.unique} {
		if strings.EqualFold(e.AttributePath.AttributeName, a) {
			return a, v, true
		}
	}
	return "", "", false
}

// swLookup recognises `externalId sw "<string>"` (case-exact, as externalId is), the filter of
// a sweep.
func (s *Store) swLookup(expr filter.Expression) (attr, prefix string, ok bool) {
	e, isAttr := expr.(*filter.AttributeExpression)
	if !isAttr || e.Operator != filter.SW || e.AttributePath.SubAttribute != nil || e.AttributePath.URIPrefix != nil ||
		!strings.EqualFold(e.AttributePath.AttributeName, "externalId") {
		return "", "", false
	}
	v, isString := e.CompareValue.(string)
	return "externalId", v, isString
}

// exprMatches evaluates `attr eq "value"` (and and/or of them) against a multi-valued item.
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
