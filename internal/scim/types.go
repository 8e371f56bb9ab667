package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Schema URNs (RFC 7643 §8.7, RFC 7644 §3.5.2, §3.12).
const (
	SchemaUser  = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup = "urn:ietf:params:scim:schemas:core:2.0:Group"
	// SchemaAgent is the IETF agent drafts' Agent (draft-wzdk-scim-agent-resource-00,
	// draft-abbey-scim-agent-extension-00).
	SchemaAgent              = "urn:ietf:params:scim:schemas:core:2.0:Agent"
	SchemaEnterpriseUser     = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaPatchOp            = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaListResponse       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaError              = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaServiceProviderCfg = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
)

// Resource is a SCIM resource as JSON attributes. Unknown attributes round-trip untouched.
type Resource map[string]any

func (r Resource) str(key string) string {
	s, _ := r[key].(string)
	return s
}

// Str is the string value of attribute key ("" when absent or not a string).
func (r Resource) Str(key string) string { return r.str(key) }

// ID is the service provider's identifier.
func (r Resource) ID() string { return r.str("id") }

// ExternalID is the client's identifier.
func (r Resource) ExternalID() string { return r.str("externalId") }

// UserName is the User's userName.
func (r Resource) UserName() string { return r.str("userName") }

// DisplayName is the displayName.
func (r Resource) DisplayName() string { return r.str("displayName") }

// Active reports the active attribute and whether it was present. Tolerates "true"/"false" strings.
func (r Resource) Active() (active bool, present bool) {
	b, ok := flexBoolOf(r["active"])
	return b, ok
}

// Version is meta.version (the ETag), if the provider sent one.
func (r Resource) Version() string {
	if m, ok := r["meta"].(map[string]any); ok {
		if v, ok := m["version"].(string); ok {
			return v
		}
	}
	return ""
}

func flexBoolOf(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(t))
		return b, err == nil
	}
	return false, false
}

// flexInt accepts a JSON number or a numeric string.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
		if len(b) == 0 {
			return nil
		}
	}
	n, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("not an integer: %q", string(b))
	}
	*f = flexInt(n)
	return nil
}

// flexBool accepts a JSON boolean or "true"/"false".
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	bv, ok := flexBoolOf(v)
	if !ok {
		return fmt.Errorf("not a boolean: %s", string(b))
	}
	*f = flexBool(bv)
	return nil
}

// ServiceProviderConfig is what discovery (RFC 7643 §5) says the provider supports.
type ServiceProviderConfig struct {
	Patch      bool
	Filter     bool
	ETag       bool
	Bulk       bool
	Sort       bool
	MaxResults int
	// CursorPaging: lists can be paged with a cursor (RFC 9865, pagination.cursor).
	CursorPaging bool
}

type supported struct {
	Supported  flexBool `json:"supported"`
	MaxResults flexInt  `json:"maxResults"`
}

type rawServiceProviderConfig struct {
	Patch  supported `json:"patch"`
	Filter supported `json:"filter"`
	ETag   supported `json:"etag"`
	Bulk   supported `json:"bulk"`
	Sort   supported `json:"sort"`
	// RFC 9865 §3.
	Pagination struct {
		Cursor flexBool `json:"cursor"`
	} `json:"pagination"`
}

// ParseServiceProviderConfig parses a ServiceProviderConfig body.
func ParseServiceProviderConfig(body []byte) (*ServiceProviderConfig, error) {
	var raw rawServiceProviderConfig
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: ServiceProviderConfig: %s", ErrMalformedResponse, Sanitize(err.Error(), maxProviderText))
	}
	return &ServiceProviderConfig{
		Patch:        bool(raw.Patch.Supported),
		Filter:       bool(raw.Filter.Supported),
		ETag:         bool(raw.ETag.Supported),
		Bulk:         bool(raw.Bulk.Supported),
		Sort:         bool(raw.Sort.Supported),
		MaxResults:   int(raw.Filter.MaxResults),
		CursorPaging: bool(raw.Pagination.Cursor),
	}, nil
}

// ListResponse is one page of a list or query (RFC 7644 §3.4.2).
type ListResponse struct {
	TotalResults int
	StartIndex   int
	ItemsPerPage int
	Resources    []Resource
	// NextCursor is the cursor of the next page (RFC 9865); "" when this is the last.
	NextCursor string
}

// ParseListResponse parses a ListResponse, tolerating "resources" for "Resources" and
// integers sent as strings.
func ParseListResponse(body []byte) (*ListResponse, error) {
	var raw struct {
		TotalResults flexInt    `json:"totalResults"`
		StartIndex   flexInt    `json:"startIndex"`
		ItemsPerPage flexInt    `json:"itemsPerPage"`
		Resources    []Resource `json:"Resources"`
		Lower        []Resource `json:"resources"`
		NextCursor   string     `json:"nextCursor"`
	}
	// encoding/json prefers the exact key, so each spelling lands in its own field.
	if err := decodeBounded(body, DefaultMaxValues, &raw); err != nil {
		return nil, malformed("ListResponse", err)
	}
	res := raw.Resources
	if len(res) == 0 {
		res = raw.Lower
	}
	return &ListResponse{
		TotalResults: int(raw.TotalResults),
		StartIndex:   int(raw.StartIndex),
		ItemsPerPage: int(raw.ItemsPerPage),
		Resources:    res,
		NextCursor:   raw.NextCursor,
	}, nil
}

// malformed reports a body that could not be decoded: too large once decoded
// (ErrLimitExceeded), or not the JSON expected (ErrMalformedResponse).
func malformed(what string, err error) error {
	if errors.Is(err, ErrLimitExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %s", ErrMalformedResponse, what, Sanitize(err.Error(), maxProviderText))
}

// ParseResource parses a single resource body; it must be a JSON object.
func ParseResource(body []byte) (Resource, error) {
	var r Resource
	if err := decodeBounded(body, DefaultMaxValues, &r); err != nil {
		return nil, malformed("resource", err)
	}
	if r == nil {
		return nil, fmt.Errorf("%w: resource: empty body", ErrMalformedResponse)
	}
	return r, nil
}

// PatchOp is one operation of a PATCH request (RFC 7644 §3.5.2).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// Filter builds `attr eq "value"` with the value quoted and escaped per RFC 7644 §3.4.2.2
// (a JSON string literal).
func Filter(attr, value string) string {
	return attr + " eq " + Quote(value)
}

// Quote renders a value as a SCIM filter string literal (a JSON string, HTML left unescaped).
func Quote(value string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(value) // a string always encodes
	return strings.TrimSuffix(buf.String(), "\n")
}

// parseErrorBody reads a SCIM error body; status may be a string or a number.
func parseErrorBody(body []byte) (scimType, detail string) {
	var raw struct {
		ScimType string `json:"scimType"`
		Detail   string `json:"detail"`
	}
	if json.Unmarshal(body, &raw) != nil {
		return "", ""
	}
	return raw.ScimType, raw.Detail
}
