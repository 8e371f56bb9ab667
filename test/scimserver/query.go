package scimserver

import (
	"encoding/json"
	"strings"

	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"
)

// matcher evaluates a parsed SCIM filter (RFC 7644 §3.4.2.2) against a stored resource: core
// attributes at the top level, extension attributes under their schema URN (so
// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "x"` works),
// strings compared as the schema says (caseExact) unless caseSensitive forces exact matching.
type matcher struct {
	core          schema.Schema
	exts          []schema.Schema
	caseSensitive bool
}

func (m matcher) match(e filter.Expression, res map[string]any) bool {
	switch t := e.(type) {
	case *filter.LogicalExpression:
		l := m.match(t.Left, res)
		if t.Operator == filter.AND {
			return l && m.match(t.Right, res)
		}
		return l || m.match(t.Right, res)
	case *filter.NotExpression:
		return !m.match(t.Expression, res)
	case *filter.ValuePath:
		for _, v := range asList(m.lookup(res, t.AttributePath.URI(), t.AttributePath.AttributeName)) {
			item, ok := v.(map[string]any)
			if ok && m.match(t.ValueFilter, item) {
				return true
			}
		}
		return false
	case *filter.AttributeExpression:
		p := t.AttributePath
		v := m.lookup(res, p.URI(), p.AttributeName)
		var values []any
		if sub := p.SubAttributeName(); sub != "" {
			for _, item := range asList(v) {
				if mm, ok := item.(map[string]any); ok {
					values = append(values, getFold(mm, sub))
				}
			}
		} else {
			values = asList(v)
		}
		exact := m.caseExact(p)
		if t.Operator == filter.NE {
			for _, got := range values {
				if compare(filter.EQ, got, t.CompareValue, exact) {
					return false
				}
			}
			return true
		}
		for _, got := range values {
			if compare(t.Operator, got, t.CompareValue, exact) {
				return true
			}
		}
		return false
	}
	return false
}

// lookup finds an attribute by name (case-insensitively), at the top level for the core
// schema (or no URN) and under the URN key for an extension.
func (m matcher) lookup(res map[string]any, uri, name string) any {
	if uri == "" || strings.EqualFold(uri, m.core.ID) {
		return getFold(res, name)
	}
	ext, _ := getFold(res, uri).(map[string]any)
	if ext == nil {
		return nil
	}
	return getFold(ext, name)
}

// caseExact says how strings of the attribute compare: id and externalId exactly (RFC 7643
// §3.1), others as their schema says; every string exactly under the case-sensitive quirk.
func (m matcher) caseExact(p filter.AttributePath) bool {
	if m.caseSensitive {
		return true
	}
	name := p.AttributeName
	if strings.EqualFold(name, "id") || strings.EqualFold(name, "externalId") {
		return true
	}
	ref := m.core
	if uri := p.URI(); uri != "" && !strings.EqualFold(uri, m.core.ID) {
		ref = schema.Schema{}
		for _, e := range m.exts {
			if strings.EqualFold(e.ID, uri) {
				ref = e
			}
		}
	}
	attr, ok := ref.Attributes.ContainsAttribute(name)
	if !ok {
		return false
	}
	if sub := p.SubAttributeName(); sub != "" {
		if sa, ok := attr.SubAttributes().ContainsAttribute(sub); ok {
			return sa.CaseExact()
		}
	}
	return attr.CaseExact()
}

func asList(v any) []any {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		return t
	}
	return []any{v}
}

func getFold(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// compare applies one comparison operator; values of different types never match.
func compare(op filter.CompareOperator, got, want any, exact bool) bool {
	if op == filter.PR {
		switch g := got.(type) {
		case nil:
			return false
		case string:
			return g != ""
		case []any:
			return len(g) > 0
		case map[string]any:
			return len(g) > 0
		}
		return true
	}
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		if !ok {
			return false
		}
		if !exact {
			g, w = strings.ToLower(g), strings.ToLower(w)
		}
		switch op {
		case filter.EQ:
			return g == w
		case filter.CO:
			return strings.Contains(g, w)
		case filter.SW:
			return strings.HasPrefix(g, w)
		case filter.EW:
			return strings.HasSuffix(g, w)
		case filter.GT:
			return g > w
		case filter.GE:
			return g >= w
		case filter.LT:
			return g < w
		case filter.LE:
			return g <= w
		}
	case bool:
		g, ok := got.(bool)
		return ok && op == filter.EQ && g == w
	case nil:
		return op == filter.EQ && got == nil
	default:
		wf, ok := number(w)
		gf, gok := number(got)
		if !ok || !gok {
			return false
		}
		switch op {
		case filter.EQ:
			return gf == wf
		case filter.GT:
			return gf > wf
		case filter.GE:
			return gf >= wf
		case filter.LT:
			return gf < wf
		case filter.LE:
			return gf <= wf
		}
	}
	return false
}

func number(v any) (float64, bool) {
	switch t := v.(type) {
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case float64:
		return t, true
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	}
	return 0, false
}

// onlyEq reports whether a filter uses nothing but `eq` joined by `and` (what AWS IAM
// Identity Center accepts).
func onlyEq(e filter.Expression) bool {
	switch t := e.(type) {
	case *filter.AttributeExpression:
		return t.Operator == filter.EQ
	case *filter.LogicalExpression:
		return t.Operator == filter.AND && onlyEq(t.Left) && onlyEq(t.Right)
	}
	return false
}

// project applies the attributes / excludedAttributes query parameters (RFC 7644 §3.4.2.5)
// to one resource: with attributes, only those (and id, schemas, which are always returned);
// with excludedAttributes, everything but those (id and schemas are never excluded). Paths
// are case-insensitive: "name", "name.givenName", a full URN path such as
// "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", or an
// extension's URN for the whole extension.
func project(res map[string]any, coreURN string, attributes, excluded []string) map[string]any {
	if len(attributes) > 0 {
		out := map[string]any{}
		for _, k := range []string{"id", "schemas"} {
			if v, ok := res[k]; ok {
				out[k] = v
			}
		}
		for _, a := range attributes {
			copyPath(res, out, coreURN, a)
		}
		return out
	}
	if len(excluded) == 0 {
		return res
	}
	out := make(map[string]any, len(res))
	for k, v := range res {
		out[k] = v
	}
	for _, a := range excluded {
		removePath(out, coreURN, a, res)
	}
	return out
}

// splitPath turns an attribute path into (container key, attribute, sub-attribute):
// container "" is the top level.
func splitPath(res map[string]any, coreURN, path string) (container, attr, sub string) {
	if strings.HasPrefix(strings.ToLower(path), "urn:") {
		if strings.HasPrefix(strings.ToLower(path), strings.ToLower(coreURN)+":") {
			path = path[len(coreURN)+1:]
		} else {
			// The longest extension URN of the resource that prefixes the path.
			for k := range res {
				lk := strings.ToLower(k)
				if !strings.HasPrefix(lk, "urn:") || len(k) <= len(container) {
					continue
				}
				if strings.EqualFold(path, k) || strings.HasPrefix(strings.ToLower(path), lk+":") {
					container = k
				}
			}
			if container == "" {
				return "", path, ""
			}
			path = strings.TrimPrefix(path[len(container):], ":")
			if path == "" {
				return "", container, ""
			}
		}
	}
	attr, sub, _ = strings.Cut(path, ".")
	return container, attr, sub
}

func keyFold(m map[string]any, key string) (string, bool) {
	if _, ok := m[key]; ok {
		return key, true
	}
	for k := range m {
		if strings.EqualFold(k, key) {
			return k, true
		}
	}
	return "", false
}

func copyPath(from, to map[string]any, coreURN, path string) {
	container, attr, sub := splitPath(from, coreURN, path)
	src, dst := from, to
	if container != "" {
		inner, _ := from[container].(map[string]any)
		if inner == nil {
			return
		}
		d, _ := to[container].(map[string]any)
		if d == nil {
			d = map[string]any{}
			to[container] = d
		}
		src, dst = inner, d
	}
	k, ok := keyFold(src, attr)
	if !ok {
		return
	}
	if sub == "" {
		dst[k] = src[k]
		return
	}
	switch v := src[k].(type) {
	case map[string]any:
		sk, ok := keyFold(v, sub)
		if !ok {
			return
		}
		d, _ := dst[k].(map[string]any)
		if d == nil {
			d = map[string]any{}
			dst[k] = d
		}
		d[sk] = v[sk]
	case []any:
		var items []any
		for _, item := range v {
			if m, ok := item.(map[string]any); ok {
				if sk, ok := keyFold(m, sub); ok {
					items = append(items, map[string]any{sk: m[sk]})
				}
			}
		}
		dst[k] = items
	}
}

func removePath(out map[string]any, coreURN, path string, orig map[string]any) {
	container, attr, sub := splitPath(orig, coreURN, path)
	target := out
	if container != "" {
		inner, _ := out[container].(map[string]any)
		if inner == nil {
			return
		}
		cp := make(map[string]any, len(inner))
		for k, v := range inner {
			cp[k] = v
		}
		out[container] = cp
		target = cp
	}
	k, ok := keyFold(target, attr)
	if !ok || (container == "" && (k == "id" || k == "schemas")) {
		return
	}
	if sub == "" {
		delete(target, k)
		return
	}
	if v, ok := target[k].(map[string]any); ok {
		cp := make(map[string]any, len(v))
		for kk, vv := range v {
			if !strings.EqualFold(kk, sub) {
				cp[kk] = vv
			}
		}
		target[k] = cp
	}
}

// valid reports whether every attribute a filter names exists: in the core schema (or the
// common id, externalId, meta), or in the extension its URN names.
func (m matcher) valid(e filter.Expression) bool {
	switch t := e.(type) {
	case *filter.LogicalExpression:
		return m.valid(t.Left) && m.valid(t.Right)
	case *filter.NotExpression:
		return m.valid(t.Expression)
	case *filter.ValuePath:
		return m.known(t.AttributePath)
	case *filter.AttributeExpression:
		return m.known(t.AttributePath)
	}
	return false
}

func (m matcher) known(p filter.AttributePath) bool {
	uri := p.URI()
	if uri == "" || strings.EqualFold(uri, m.core.ID) {
		switch strings.ToLower(p.AttributeName) {
		case "id", "externalid", "meta":
			return true
		}
		_, ok := m.core.Attributes.ContainsAttribute(p.AttributeName)
		return ok
	}
	for _, e := range m.exts {
		if strings.EqualFold(e.ID, uri) {
			_, ok := e.Attributes.ContainsAttribute(p.AttributeName)
			return ok
		}
	}
	return false
}
