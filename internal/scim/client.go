// Package scim is a SCIM 2.0 (RFC 7643/7644) client for service provider endpoints.
// It has no Kubernetes dependencies: controllers build a Client per target and decide
// retries from the typed *Error it returns.
package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultTimeout bounds each call.
	DefaultTimeout = 15 * time.Second
	// DefaultMaxBodyBytes caps each response body (4 MiB).
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxListPages caps the pages one ListAll (or Find) reads: 500 pages of
	// DefaultPageSize reach DefaultMaxListItems, and each page is a request bounded by Timeout.
	DefaultMaxListPages = 500
	// DefaultMaxListItems caps the resources one ListAll (or Find) keeps: five times the 10,000
	// identities per target the operator is built for.
	DefaultMaxListItems = 50_000
	// DefaultMaxListBytes caps the response bytes one ListAll (or Find) reads across its pages
	// (32 MiB). Parsed into maps a list takes several times its JSON size, so this, not the
	// page count, is what bounds the memory a provider's list can claim.
	DefaultMaxListBytes = 32 << 20
	contentType         = "application/scim+json"
)

// Authenticator adds credentials to a request.
type Authenticator interface {
	Authenticate(req *http.Request) error
}

// BearerToken authenticates with `Authorization: Bearer <token>`.
type BearerToken string

// Authenticate implements Authenticator.
func (t BearerToken) Authenticate(req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+string(t))
	return nil
}

// Options configure a Client.
type Options struct {
	// HTTPClient sends the requests; nil means a client with http.DefaultTransport.
	HTTPClient *http.Client
	// Auth adds credentials; nil sends none.
	Auth Authenticator
	// Timeout bounds each call (DefaultTimeout when zero).
	Timeout time.Duration
	// MaxBodyBytes caps each response body (DefaultMaxBodyBytes, 4 MiB, when zero); a larger
	// body is ErrLimitExceeded.
	MaxBodyBytes int64
	// MaxListPages caps the pages of one ListAll or Find (DefaultMaxListPages, 500, when zero).
	MaxListPages int
	// MaxListItems caps the resources of one ListAll or Find (DefaultMaxListItems, 50,000, when
	// zero).
	MaxListItems int
	// MaxListBytes caps the response bytes of one ListAll or Find across its pages
	// (DefaultMaxListBytes, 32 MiB, when zero).
	// Beyond any of these caps the call fails with ErrLimitExceeded; nothing is truncated.
	MaxListBytes int64
	// Slots, when set, bounds the requests in flight to the target; share one among the
	// clients of one target (see Slots).
	Slots *Slots
	// TenantSlots, when set, bounds the requests in flight to every target of one tenant
	// together (share one among the clients of all the targets of one namespace), so a
	// tenant whose many targets hang holds a bounded share of the caller's workers, whatever
	// the number of its targets. Taken before Slots.
	TenantSlots *Slots
	// Limiter, when set, is waited on before every request, in the order of the calls'
	// priorities (WithPriority, Urgent); share one among the clients of one target.
	Limiter *Limiter
	// UserAgent is sent with every request.
	UserAgent string
	// Observer, when set, is told of every request: method, HTTP status (0 when no response
	// arrived) and duration. Controllers export it as metrics.
	Observer func(method string, status int, d time.Duration)
	// MaxRetries bounds in-call retries of idempotent requests (default 2; negative: none).
	MaxRetries int
	// RetryBase is the first backoff (default 100ms), doubled per attempt, with jitter.
	RetryBase time.Duration
	// FilterUnsupported makes Find scan the whole list instead of filtering on the provider.
	FilterUnsupported bool
	// ReadOnly refuses every request but GET with ErrReadOnly before anything is sent: the
	// client of a target in Observe mode can read, never write.
	ReadOnly bool
	// ReadOnlyNow, when set, is asked before each request but GET: true refuses it as ReadOnly
	// does, so a target switched to Observe stops a client made before the switch at its next
	// write.
	ReadOnlyNow func() bool
}

// Refresher is an Authenticator whose credential can be dropped and fetched again (OAuth2):
// a 401 invalidates it once and the request is retried.
type Refresher interface {
	Authenticator
	Invalidate()
}

// Reloader is an Authenticator whose credentials are read from a source that may have changed
// since (a rotated Secret): a 401 or 403 asks it once to read them again, and the request is
// retried when it says they changed. Reload is told the status that was answered; a Reloader
// that is also a Refresher is not Invalidated besides (Reload decides).
type Reloader interface {
	Authenticator
	Reload(ctx context.Context, status int) (changed bool)
}

// Client talks to one SCIM service provider.
type Client struct {
	base *url.URL
	opts Options
}

// New returns a client for the endpoint (the SCIM base URL, e.g. https://host/scim/v2).
func New(endpoint string, opts Options) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("parsing endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("endpoint %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("endpoint %q has no host", u.Redacted())
	}
	if u.User != nil {
		return nil, errors.New("endpoint must not carry credentials; use spec.auth")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	// A shallow copy: the caller's client (and its connection pool) is shared, but this one
	// never follows redirects, whatever the caller configured.
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opts.HTTPClient = &hc
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxListPages <= 0 {
		opts.MaxListPages = DefaultMaxListPages
	}
	if opts.MaxListItems <= 0 {
		opts.MaxListItems = DefaultMaxListItems
	}
	if opts.MaxListBytes <= 0 {
		opts.MaxListBytes = DefaultMaxListBytes
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "scim-operator"
	}
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = 2
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 100 * time.Millisecond
	}
	if hc.Timeout <= 0 {
		// A backstop behind the per-call deadline of do, which normally fires first.
		hc.Timeout = 2 * opts.Timeout
	}
	return &Client{base: u, opts: opts}, nil
}

// Endpoint is the base URL.
func (c *Client) Endpoint() string { return c.base.String() }

type request struct {
	method  string
	path    string // relative to the endpoint, starting with '/'
	query   url.Values
	body    any
	ifMatch string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// maxPathInErrors bounds the request path quoted in errors: it may hold a provider's id.
const maxPathInErrors = 160

// label names a request in errors: method and path (ids escaped, so ASCII), bounded.
func (r request) label() string { return r.method + " " + Sanitize(r.path, maxPathInErrors) }

// do sends a request with the client's retry policy: idempotent requests (all but POST) are
// retried on network errors and 5xx (not 501) with jittered exponential backoff, at most
// MaxRetries times and never past the call's budget (Timeout); a 401 with a refreshable
// credential (OAuth2) refreshes it once and retries, and a 401 or 403 with a reloadable one
// (a Secret) reads it again once and retries if it changed. 429 and 503 with Retry-After are not
// waited for here: the error carries the wait for the caller to schedule.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	if r.method != http.MethodGet && (c.opts.ReadOnly || c.opts.ReadOnlyNow != nil && c.opts.ReadOnlyNow()) {
		return nil, fmt.Errorf("%s: %w", r.label(), ErrReadOnly)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	refreshed := false
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, r)
		if err == nil {
			return resp, nil
		}
		if rl, ok := c.opts.Auth.(Reloader); ok && !refreshed && IsUnauthorized(err) {
			refreshed = true
			if rl.Reload(ctx, statusOf(err)) {
				continue
			}
		} else if rf, ok := c.opts.Auth.(Refresher); ok && !refreshed && statusOf(err) == http.StatusUnauthorized {
			refreshed = true
			rf.Invalidate()
			continue
		}
		if r.method == http.MethodPost || attempt >= c.opts.MaxRetries || !IsRetryable(err) {
			return nil, err
		}
		if _, asked := RetryAfter(err); asked {
			return nil, err // a busy target included: the caller schedules the retry
		}
		wait := c.opts.RetryBase << attempt
		wait += time.Duration(rand.Int64N(int64(wait)/2 + 1)) // jitter: up to +50%
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err // no budget left for another attempt
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// once sends one attempt. It waits for the rate limiter first and then for a slot (a wait on
// the limiter must not hold a slot), and holds the slot while it authenticates, sends and
// reads the response.
func (c *Client) once(ctx context.Context, r request) (*response, error) {
	call := r.label()
	release, err := c.admit(ctx, call)
	if err != nil {
		return nil, err
	}
	defer release()
	// How this attempt ended, for the errors of calls that find every slot taken: why the
	// target is busy. It names no account (the target may be shared among tenants).
	ended := ""
	defer func() { c.opts.Slots.note(ended); c.opts.TenantSlots.note(ended) }()
	req, err := c.newRequest(ctx, r, call)
	if err != nil {
		return nil, err
	}
	if c.opts.Auth != nil {
		if err := c.opts.Auth.Authenticate(req); err != nil {
			ended = "authenticating: " + err.Error()
			return nil, fmt.Errorf("SCIM %s: authenticating: %w", call, err)
		}
	}
	began := time.Now()
	resp, err := c.opts.HTTPClient.Do(req)
	if c.opts.Observer != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		c.opts.Observer(r.method, status, time.Since(began))
	}
	if err != nil {
		// url.Error repeats the full URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		ended = "no answer"
		if errors.Is(err, context.DeadlineExceeded) {
			ended = "no answer in time"
		}
		return nil, fmt.Errorf("SCIM %s: %w", call, sanitizedError{err})
	}
	if resp.StatusCode >= 500 {
		ended = "answered " + strconv.Itoa(resp.StatusCode)
	}
	defer func() { _ = resp.Body.Close() }()
	return c.readResponse(resp, r, call)
}

// admit waits for the rate limiter, then takes a request slot of the tenant and one of the
// target; release gives both back.
func (c *Client) admit(ctx context.Context, call string) (release func(), err error) {
	if c.opts.Limiter != nil {
		if err := c.opts.Limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("SCIM %s: waiting for the rate limiter: %w", call, err)
		}
	}
	releaseTenant, err := c.opts.TenantSlots.acquire(ctx, call)
	if err != nil {
		if errors.Is(err, ErrTargetBusy) {
			return nil, err
		}
		return nil, fmt.Errorf("SCIM %s: waiting for a request slot of the tenant: %w", call, err)
	}
	releaseTarget, err := c.opts.Slots.acquire(ctx, call)
	if err != nil {
		releaseTenant()
		if errors.Is(err, ErrTargetBusy) {
			return nil, err
		}
		return nil, fmt.Errorf("SCIM %s: waiting for a request slot: %w", call, err)
	}
	return func() { releaseTarget(); releaseTenant() }, nil
}

// newRequest builds the HTTP request of r: its URL under the base, its JSON body, its headers
// (authentication is added by the caller).
func (c *Client) newRequest(ctx context.Context, r request, call string) (*http.Request, error) {
	u := *c.base
	// r.path is already escaped (ids go through url.PathEscape); keep both forms in step.
	u.RawPath = c.base.EscapedPath() + r.path
	unescaped, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, fmt.Errorf("SCIM %s: %w", call, err)
	}
	u.Path = unescaped
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("SCIM %s: encoding body: %w", call, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("SCIM %s: %w", call, err)
	}
	req.Header.Set("Accept", contentType+", application/json")
	req.Header.Set("User-Agent", c.opts.UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	return req, nil
}

// readResponse reads a bounded answer: a redirect or an error status is an *Error (with the
// provider's detail), anything else the body.
func (c *Client) readResponse(resp *http.Response, r request, call string) (*response, error) {
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Not followed (see New); neither the body nor the Location header is read.
		return nil, &Error{Method: r.method, Path: Sanitize(r.path, maxPathInErrors), Status: resp.StatusCode, cause: ErrRedirect}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("SCIM %s: reading response: %w", call, sanitizedError{err})
	}
	if int64(len(data)) > c.opts.MaxBodyBytes {
		return nil, fmt.Errorf("SCIM %s: %w: response body larger than %d bytes", call, ErrLimitExceeded, c.opts.MaxBodyBytes)
	}
	if resp.StatusCode >= 400 {
		e := &Error{Method: r.method, Path: Sanitize(r.path, maxPathInErrors), Status: resp.StatusCode,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		scimType, detail := parseErrorBody(data)
		e.ScimType, e.Detail = Sanitize(scimType, maxScimType), Sanitize(detail, maxProviderText)
		return nil, e
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// resource sends a request answered by one resource. A body that is not a resource with an id
// is malformed: an id of "" would later address the collection (DELETE /Users/). needBody says
// an empty answer (204 included) is malformed too.
func (c *Client) resource(ctx context.Context, r request, needBody bool) (Resource, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusNoContent || len(bytes.TrimSpace(resp.body)) == 0 {
		if needBody {
			return nil, fmt.Errorf("SCIM %s: %w: no resource in the response", r.label(), ErrMalformedResponse)
		}
		return nil, nil
	}
	res, err := ParseResource(resp.body)
	if err != nil {
		return nil, fmt.Errorf("SCIM %s: %w", r.label(), err)
	}
	if res.ID() == "" {
		return nil, fmt.Errorf("SCIM %s: %w: the resource has no id", r.label(), ErrMalformedResponse)
	}
	if etag := resp.header.Get("ETag"); etag != "" && res.Version() == "" {
		meta, _ := res["meta"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
		}
		meta["version"] = etag
		res["meta"] = meta
	}
	return res, nil
}

// ServiceProviderConfig reads /ServiceProviderConfig.
func (c *Client) ServiceProviderConfig(ctx context.Context) (*ServiceProviderConfig, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/ServiceProviderConfig"})
	if err != nil {
		return nil, err
	}
	cfg, err := ParseServiceProviderConfig(resp.body)
	if err != nil {
		return nil, fmt.Errorf("SCIM GET /ServiceProviderConfig: %w", err)
	}
	return cfg, nil
}

// idRequest builds a request on one resource; an empty id is refused before anything is sent.
func idRequest(method, kind, id string) (request, error) {
	if id == "" {
		return request{}, fmt.Errorf("SCIM %s /%s/: %w", method, kind, ErrEmptyID)
	}
	return request{method: method, path: "/" + kind + "/" + url.PathEscape(id)}, nil
}

// Get reads one resource of kind ("Users" or "Groups").
func (c *Client) Get(ctx context.Context, kind, id string) (Resource, error) {
	r, err := idRequest(http.MethodGet, kind, id)
	if err != nil {
		return nil, err
	}
	return c.resource(ctx, r, true)
}

// Create POSTs a resource.
func (c *Client) Create(ctx context.Context, kind string, res Resource) (Resource, error) {
	return c.resource(ctx, request{method: http.MethodPost, path: "/" + kind, body: res}, true)
}

// Replace PUTs a resource; ifMatch, when set, is sent as If-Match.
func (c *Client) Replace(ctx context.Context, kind, id string, res Resource, ifMatch string) (Resource, error) {
	r, err := idRequest(http.MethodPut, kind, id)
	if err != nil {
		return nil, err
	}
	r.body, r.ifMatch = res, ifMatch
	return c.resource(ctx, r, false)
}

// Patch sends PATCH operations. The result is nil when the provider answered 204.
func (c *Client) Patch(ctx context.Context, kind, id string, ops []PatchOp, ifMatch string) (Resource, error) {
	r, err := idRequest(http.MethodPatch, kind, id)
	if err != nil {
		return nil, err
	}
	r.body = map[string]any{"schemas": []string{SchemaPatchOp}, "Operations": ops}
	r.ifMatch = ifMatch
	return c.resource(ctx, r, false)
}

// Delete deletes a resource.
func (c *Client) Delete(ctx context.Context, kind, id string) error {
	return c.DeleteIfMatch(ctx, kind, id, "")
}

// DeleteIfMatch deletes a resource; ifMatch, when set, is sent as If-Match.
func (c *Client) DeleteIfMatch(ctx context.Context, kind, id, ifMatch string) error {
	r, err := idRequest(http.MethodDelete, kind, id)
	if err != nil {
		return err
	}
	r.ifMatch = ifMatch
	_, err = c.do(ctx, r)
	return err
}

// Find lists resources of kind where attr equals value. Matches are re-checked on the client
// (case-insensitively for userName and displayName, exactly otherwise) because providers
// differ in how they compare, and some ignore the filter and return every resource (all pages
// are then read). When the provider cannot filter (Options.FilterUnsupported, or it answers
// the filter with 400 invalidFilter, 403 or 501) the whole list is scanned instead.
func (c *Client) Find(ctx context.Context, kind, attr, value string) ([]Resource, error) {
	// Only the matches of each page are kept: a provider that ignores the filter costs one page
	// of memory at a time, not the whole list.
	var out []Resource
	keep := func(page []Resource) error {
		for _, r := range page {
			if matches(r, attr, value) {
				out = append(out, r)
			}
		}
		return nil
	}
	var err error
	if !c.opts.FilterUnsupported {
		err = c.EachPage(ctx, kind, Filter(attr, value), DefaultPageSize, 0, keep)
	}
	if c.opts.FilterUnsupported || filterRefused(err) {
		out = nil
		err = c.EachPage(ctx, kind, "", DefaultPageSize, 0, keep)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DefaultPageSize is the count asked for per page.
const DefaultPageSize = 100

func filterRefused(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Status == http.StatusNotImplemented || e.Status == http.StatusForbidden ||
		(e.Status == http.StatusBadRequest && (e.ScimType == "invalidFilter" || e.ScimType == ""))
}

// AddMembers adds members to a group with PATCH add operations of at most chunk members each
// (DefaultMemberChunk when chunk <= 0); the member list is never replaced.
func (c *Client) AddMembers(ctx context.Context, groupID string, memberIDs []string, chunk int) error {
	if chunk <= 0 {
		chunk = DefaultMemberChunk
	}
	for start := 0; start < len(memberIDs); start += chunk {
		end := min(start+chunk, len(memberIDs))
		members := make([]map[string]any, 0, end-start)
		for _, id := range memberIDs[start:end] {
			members = append(members, map[string]any{"value": id})
		}
		if _, err := c.Patch(ctx, "Groups", groupID, []PatchOp{{Op: "add", Path: "members", Value: members}}, ""); err != nil {
			return err
		}
	}
	return nil
}

// RemoveMember removes one member in RFC form: path members[value eq "<id>"].
func (c *Client) RemoveMember(ctx context.Context, groupID, memberID string) error {
	_, err := c.Patch(ctx, "Groups", groupID, []PatchOp{{Op: "remove", Path: "members[value eq " + Quote(memberID) + "]"}}, "")
	return err
}

// DefaultMemberChunk is how many members one PATCH adds at most.
const DefaultMemberChunk = 100

// ResourceTypes reads /ResourceTypes (RFC 7644 §4), where the provider serves it.
func (c *Client) ResourceTypes(ctx context.Context) ([]Resource, error) {
	return c.ListAll(ctx, "ResourceTypes", "", DefaultPageSize, 10)
}

// Schemas reads /Schemas (RFC 7644 §4), where the provider serves it.
func (c *Client) Schemas(ctx context.Context) ([]Resource, error) {
	return c.ListAll(ctx, "Schemas", "", DefaultPageSize, 10)
}

func matches(r Resource, attr, value string) bool {
	got := r.str(attr)
	switch attr {
	case "userName", "displayName", "name", "agentUserName": // caseExact false (RFC 7643 §4.1.1; the agent drafts' names alike)
		return strings.EqualFold(got, value)
	}
	return got == value
}

// List reads one page of resources of kind; startIndex is 1-based. Users and Groups without
// an id are ErrMalformedResponse.
func (c *Client) List(ctx context.Context, kind, filter string, startIndex, count int) (*ListResponse, error) {
	list, _, err := c.page(ctx, kind, filter, url.Values{"startIndex": {strconv.Itoa(startIndex)}, "count": {strconv.Itoa(count)}})
	return list, err
}

// page reads one page (q: its paging parameters) and reports the size of its body.
func (c *Client) page(ctx context.Context, kind, filter string, q url.Values) (*ListResponse, int, error) {
	if filter != "" {
		q.Set("filter", filter)
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/" + kind, query: q})
	if err != nil {
		return nil, 0, err
	}
	list, err := ParseListResponse(resp.body)
	if err != nil {
		return nil, 0, fmt.Errorf("SCIM GET /%s: %w", kind, err)
	}
	if kind != "ResourceTypes" && kind != "Schemas" { // accounts and groups must be addressable
		for _, r := range list.Resources {
			if r.ID() == "" {
				return nil, 0, fmt.Errorf("SCIM GET /%s: %w: a listed resource has no id", kind, ErrMalformedResponse)
			}
		}
	}
	return list, len(resp.body), nil
}

// BasicAuth authenticates with HTTP basic credentials.
type BasicAuth struct{ Username, Password string }

// Authenticate implements Authenticator.
func (b BasicAuth) Authenticate(req *http.Request) error {
	req.SetBasicAuth(b.Username, b.Password)
	return nil
}

// ListAll reads every resource of kind matching filter (see EachPage) and returns them.
func (c *Client) ListAll(ctx context.Context, kind, filter string, pageSize, maxPages int) ([]Resource, error) {
	var all []Resource
	if err := c.EachPage(ctx, kind, filter, pageSize, maxPages, func(page []Resource) error {
		all = append(all, page...)
		return nil
	}); err != nil {
		return nil, err
	}
	return all, nil
}

// EachPage reads every resource of kind matching filter, page by page, and hands each page to
// fn, so a caller keeps only what it needs: 1-based startIndex, advanced by the number of
// resources received (not by itemsPerPage, which providers get wrong), until an empty page or
// totalResults (see morePages for providers that report the page size as the total; a
// provider that ignores startIndex is ErrPageRepeated). It reads at most maxPages pages (when > 0, and never more than
// Options.MaxListPages), Options.MaxListItems resources and Options.MaxListBytes bytes, within
// ListTimeout (four times Timeout) in all; a list beyond one of these is ErrLimitExceeded (or
// the deadline) and the walk stops with that error: a truncated list would make accounts look
// absent, so callers must not act on the pages seen before an error.
func (c *Client) EachPage(ctx context.Context, kind, filter string, pageSize, maxPages int, fn func([]Resource) error) error {
	return c.eachPage(ctx, kind, filter, pageSize, maxPages, false, fn)
}

// EachPageByCursor is EachPage paged with a cursor (RFC 9865), for a provider whose
// ServiceProviderConfig advertises pagination.cursor: the first request sends an empty cursor,
// each next one the nextCursor of the page before, until a page has none. The same bounds
// apply; a provider that hands back the cursor it was just given is ErrPageRepeated.
func (c *Client) EachPageByCursor(ctx context.Context, kind, filter string, pageSize, maxPages int, fn func([]Resource) error) error {
	return c.eachPage(ctx, kind, filter, pageSize, maxPages, true, fn)
}

// maxCursor bounds a nextCursor the client sends back: a provider cannot make every
// request of a walk carry a payload of its choosing.
const maxCursor = 4096

func (c *Client) eachPage(ctx context.Context, kind, filter string, pageSize, maxPages int, byCursor bool, fn func([]Resource) error) error {
	if maxPages <= 0 || maxPages > c.opts.MaxListPages {
		maxPages = c.opts.MaxListPages
	}
	ctx, cancel := context.WithTimeout(ctx, c.listTimeout())
	defer cancel()
	var total int64
	items := 0
	start, cursor := 1, ""
	var prev []Resource
	for page := 0; page < maxPages; page++ {
		q := url.Values{"startIndex": {strconv.Itoa(start)}, "count": {strconv.Itoa(pageSize)}}
		if byCursor {
			q = url.Values{"cursor": {cursor}, "count": {strconv.Itoa(pageSize)}}
		}
		list, size, err := c.page(ctx, kind, filter, q)
		if err != nil {
			return err
		}
		if len(list.Resources) == 0 {
			return nil
		}
		if err := repeatedPage(kind, prev, list.Resources); err != nil {
			return err
		}
		prev = list.Resources
		if total += int64(size); total > c.opts.MaxListBytes {
			return fmt.Errorf("SCIM GET /%s: %w: the list is larger than %d bytes", kind, ErrLimitExceeded, c.opts.MaxListBytes)
		}
		if items += len(list.Resources); items > c.opts.MaxListItems {
			return fmt.Errorf("SCIM GET /%s: %w: the list has more than %d resources", kind, ErrLimitExceeded, c.opts.MaxListItems)
		}
		if err := fn(list.Resources); err != nil {
			return err
		}
		if byCursor {
			if list.NextCursor == "" {
				return nil
			}
			if len(list.NextCursor) > maxCursor {
				return fmt.Errorf("SCIM GET /%s: %w: a nextCursor of %d bytes (at most %d)", kind, ErrMalformedResponse, len(list.NextCursor), maxCursor)
			}
			if list.NextCursor == cursor {
				return fmt.Errorf("SCIM GET /%s: %w: %w: nextCursor %q is the cursor of the page it answers", kind, ErrMalformedResponse, ErrPageRepeated, Sanitize(cursor, 64))
			}
			cursor = list.NextCursor
			continue
		}
		start += len(list.Resources)
		if !morePages(list, pageSize, start) {
			return nil
		}
	}
	return fmt.Errorf("SCIM GET /%s: %w: still paging after %d pages", kind, ErrLimitExceeded, maxPages)
}

// listTimeout bounds one walk through a list, all its pages together.
func (c *Client) listTimeout() time.Duration { return 4 * c.opts.Timeout }
