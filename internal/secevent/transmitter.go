package secevent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/utils/clock"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

const (
	// DefaultTimeout bounds each delivery attempt.
	DefaultTimeout = 10 * time.Second
	// MaxResponseBytes bounds what is read of a receiver's answer.
	MaxResponseBytes = 64 << 10
	// MaxRetryAfter bounds the wait a receiver may ask for with Retry-After.
	MaxRetryAfter = time.Hour
	// maxErrText bounds the receiver's err and description kept in an error.
	maxErrText = 256
)

// RFC 8935 section 2.4 error codes a receiver answers 400 with.
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidKey           = "invalid_key"
	ErrCodeInvalidIssuer        = "invalid_issuer"
	ErrCodeInvalidAudience      = "invalid_audience"
	ErrCodeAuthenticationFailed = "authentication_failed"
	ErrCodeAccessDenied         = "access_denied"
)

// ErrRedirect is the cause of a DeliveryError for a 3xx answer: redirects are not followed (a
// SET and the bearer token go only where the operator was configured to send them).
var ErrRedirect = errors.New("the receiver answered with a redirect; redirects are not followed")

// ErrRetriesExhausted wraps the last error of a delivery that kept failing with retryable
// errors until RetryPolicy's MaxAttempts or MaxAge.
var ErrRetriesExhausted = errors.New("security event not delivered: retries exhausted")

// ErrPossiblyDelivered wraps a 400 invalid_request answer to a retry of a SET whose earlier
// attempt got no answer: the receiver may have accepted the SET then and now refuses it as a
// duplicate jti (RFC 8935 has no distinct code for a replay).
var ErrPossiblyDelivered = errors.New("an earlier attempt got no answer: the receiver may have accepted this SET")

// ErrInsecureAddress is what a plain-http receiver URL gets when its host resolves to an
// address that is not loopback: SETs and the token travel in clear text only on the machine.
var ErrInsecureAddress = errors.New("plain http is allowed only to a loopback address")

// DeliveryError is one failed delivery attempt. It names the receiver by scheme and host
// only and never carries the SET, the token or response headers.
type DeliveryError struct {
	// Receiver is scheme://host of the receiver URL.
	Receiver string
	// Status is the HTTP status; 0 when there was no answer.
	Status int
	// Code is the receiver's RFC 8935 err ("invalid_audience", ...), when it sent one.
	Code string
	// Description is the receiver's description, sanitised and bounded.
	Description string
	// RetryAfter is the wait the receiver asked for (429, 503), 0 if none.
	RetryAfter time.Duration
	// Retryable is true for 408, 429, 5xx and transport errors: the same SET may be sent again.
	Retryable bool

	cause error
}

func (e *DeliveryError) Error() string {
	msg := "pushing security event to " + e.Receiver
	if e.Status != 0 {
		msg += fmt.Sprintf(": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

// Unwrap exposes the cause (ErrRedirect, a sanitised transport error).
func (e *DeliveryError) Unwrap() error { return e.cause }

// IsRetryable reports whether err is worth sending the same SET again for.
func IsRetryable(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Retryable
}

// RetryPolicy bounds the retries of one SET: exponential backoff with jitter from BaseDelay up
// to MaxDelay (or longer when the receiver's Retry-After asks), at most MaxAttempts attempts
// and no new attempt MaxAge after the first.
type RetryPolicy struct {
	MaxAttempts int
	MaxAge      time.Duration
	BaseDelay   time.Duration
	MaxDelay    time.Duration
}

// DefaultRetryPolicy: 12 attempts over up to about 20 minutes (1 s, 2 s, ... capped at 5 min),
// none after an hour.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 12, MaxAge: time.Hour, BaseDelay: time.Second, MaxDelay: 5 * time.Minute}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetryPolicy.MaxAttempts
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultRetryPolicy.MaxAge
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultRetryPolicy.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultRetryPolicy.MaxDelay
	}
	p.MaxDelay = max(p.MaxDelay, p.BaseDelay)
	return p
}

// Backoff is the wait after failed attempt n (1-based): BaseDelay·2^(n-1) capped at MaxDelay,
// jittered into its upper half (jitter in [0,1)), and never shorter than retryAfter.
func (p RetryPolicy) Backoff(n int, retryAfter time.Duration, jitter float64) time.Duration {
	d := p.MaxDelay
	if n-1 < 62 {
		if e := p.BaseDelay << (n - 1); e > 0 && e < p.MaxDelay {
			d = e
		}
	}
	d = d/2 + time.Duration(jitter*float64(d/2))
	return max(d, min(retryAfter, MaxRetryAfter))
}

// TransmitterOptions configure a Transmitter; the zero value is usable.
type TransmitterOptions struct {
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// AuthorizationHeader, when Token is empty, is sent as the whole Authorization header (a
	// Shared Signals stream's authorization_header).
	AuthorizationHeader string
	// Timeout bounds each attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// Retry bounds Deliver's retries; DefaultRetryPolicy's values where zero.
	Retry RetryPolicy
	// Clock times the waits between attempts; the real clock when nil.
	Clock clock.Clock
	// HTTPClient replaces the default client (tests); its redirects are never followed.
	HTTPClient *http.Client
	// Jitter returns a number in [0,1); math/rand when nil.
	Jitter func() float64
}

// Transmitter pushes SETs to one receiver (RFC 8935).
type Transmitter struct {
	url      string
	receiver string // scheme://host, for errors
	token    string
	authz    string
	timeout  time.Duration
	retry    RetryPolicy
	clock    clock.Clock
	client   *http.Client
	jitter   func() float64

	attempts attemptCounts
}

type attemptCounts struct{ accepted, retryable, refused atomic.Int64 }

// NewTransmitter returns a transmitter to receiverURL, which must be https, or http to a
// loopback host (see ValidateReceiverURL).
func NewTransmitter(receiverURL string, opts TransmitterOptions) (*Transmitter, error) {
	u, err := ValidateReceiverURL(receiverURL)
	if err != nil {
		return nil, err
	}
	t := &Transmitter{
		url:      u.String(),
		receiver: u.Scheme + "://" + u.Host,
		token:    opts.Token,
		authz:    opts.AuthorizationHeader,
		timeout:  opts.Timeout,
		retry:    opts.Retry.withDefaults(),
		clock:    opts.Clock,
		jitter:   opts.Jitter,
	}
	if t.timeout <= 0 {
		t.timeout = DefaultTimeout
	}
	if t.clock == nil {
		t.clock = clock.RealClock{}
	}
	if t.jitter == nil {
		t.jitter = rand.Float64
	}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		c.CheckRedirect = noRedirects
		t.client = &c
	} else {
		t.client = newHTTPClient(u.Scheme == "http", 2*t.timeout)
	}
	return t, nil
}

// ValidateReceiverURL accepts an absolute https URL, or http to localhost or a loopback IP
// (tests, a receiver beside the operator), without user info or fragment.
func ValidateReceiverURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("receiver URL does not parse") // the parser quotes the URL
	}
	if u.User != nil {
		return nil, errors.New("receiver URL must not carry user info; use the token Secret")
	}
	if u.Fragment != "" || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("receiver URL must be an absolute URL with a host and no fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("receiver URL %s://%s: %w", u.Scheme, u.Host, ErrInsecureAddress)
		}
	default:
		return nil, fmt.Errorf("receiver URL scheme %q is not https", u.Scheme)
	}
	return u, nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newHTTPClient: bounded response headers, no redirects and, for plain http, a dialer that
// connects to loopback addresses only (localhost could resolve elsewhere).
func newHTTPClient(plainHTTP bool, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxResponseHeaderBytes = MaxResponseBytes
	if plainHTTP {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
		tr.DialContext = d.DialContext
		tr.Proxy = nil
	}
	return &http.Client{Transport: tr, CheckRedirect: noRedirects, Timeout: timeout}
}

// loopbackOnly is a net.Dialer Control: it runs for each address dialled, after resolution.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return ErrInsecureAddress
	}
	return nil
}

// Receiver is scheme://host of the receiver URL: how logs and errors name it.
func (t *Transmitter) Receiver() string { return t.receiver }

// Send makes one delivery attempt: nil when the receiver accepted the SET (202, or another
// 2xx), else a *DeliveryError (or the context's error when ctx ended).
func (t *Transmitter) Send(ctx context.Context, set string) error {
	err := t.send(ctx, set)
	var de *DeliveryError
	switch {
	case err != nil && !errors.As(err, &de):
		// The caller's context ended: not an attempt the receiver answered.
	case err == nil:
		t.attempts.accepted.Add(1)
	case IsRetryable(err):
		t.attempts.retryable.Add(1)
	default:
		t.attempts.refused.Add(1)
	}
	return err
}

func (t *Transmitter) send(ctx context.Context, set string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, t.url, strings.NewReader(set))
	if err != nil {
		return &DeliveryError{Receiver: t.receiver, cause: errors.New("building the request failed")}
	}
	req.Header.Set("Content-Type", "application/"+MediaType)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "scim-operator")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	} else if t.authz != "" {
		req.Header.Set("Authorization", t.authz)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // the caller gave up, not the receiver
		}
		return &DeliveryError{Receiver: t.receiver, Retryable: true, cause: transportError(err)}
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	de := &DeliveryError{Receiver: t.receiver, Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		de.cause = ErrRedirect
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode >= 500:
		de.Retryable = true
		de.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), t.clock.Now())
	}
	var e struct {
		Err         string `json:"err"`
		Description string `json:"description"`
	}
	if json.Unmarshal(body, &e) == nil {
		de.Code = scim.Sanitize(e.Err, maxErrText)
		de.Description = scim.Sanitize(e.Description, maxErrText)
	}
	return de
}

// transportError keeps what went wrong, not where: *url.Error quotes the whole URL, which may
// carry a secret in its query string.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, ErrInsecureAddress) {
		return ErrInsecureAddress
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("attempt timed out")
	}
	return sanitized{err}
}

type sanitized struct{ err error }

func (s sanitized) Error() string { return scim.Sanitize(s.err.Error(), maxErrText) }
func (s sanitized) Unwrap() error { return s.err }

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), MaxRetryAfter)
	}
	return 0
}

// Deliver sends set until the receiver accepts it, refuses it (a non-retryable
// *DeliveryError: 400, 401, 403, 3xx...; wrapped in ErrPossiblyDelivered when it may be a
// replay of an attempt that got no answer), the retry policy gives up (ErrRetriesExhausted
// wrapping the last error) or ctx ends. Every attempt sends the same SET, so a receiver that
// de-duplicates on jti sees it once.
func (t *Transmitter) Deliver(ctx context.Context, set string) error {
	start := t.clock.Now()
	unanswered := false
	for n := 1; ; n++ {
		err := t.Send(ctx, set)
		var de *DeliveryError
		errors.As(err, &de)
		switch {
		case err == nil:
			return nil
		case !IsRetryable(err):
			if unanswered && de != nil && de.Status == http.StatusBadRequest && de.Code == ErrCodeInvalidRequest {
				return fmt.Errorf("%w: %w", ErrPossiblyDelivered, err)
			}
			return err
		case n >= t.retry.MaxAttempts:
			return fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, n, err)
		}
		unanswered = unanswered || de.Status == 0
		wait := t.retry.Backoff(n, de.RetryAfter, t.jitter())
		if t.clock.Since(start)+wait > t.retry.MaxAge {
			return fmt.Errorf("%w after %d attempts (next one would be past %s): %w", ErrRetriesExhausted, n, t.retry.MaxAge, err)
		}
		timer := t.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C():
		}
	}
}

// Verdict is what one delivery attempt's answer means for its token.
type Verdict int

const (
	// Accepted: the receiver took it.
	Accepted Verdict = iota
	// Canceled: the caller's context ended; no answer to judge.
	Canceled
	// WaitAndRetry: the receiver asked to be left alone for a while (Retry-After); send it again then.
	WaitAndRetry
	// Retry: a retryable failure (no answer, 408, 429, 5xx); send it again after a backoff.
	Retry
	// Refused: the receiver will never take it (4xx, a redirect, a token that cannot be built).
	Refused
)

// Judge classifies the error of Send for ctx; for WaitAndRetry it also returns the wait the
// receiver asked for, cut to maxWait.
func Judge(ctx context.Context, err error, maxWait time.Duration) (Verdict, time.Duration) {
	var de *DeliveryError
	switch {
	case err == nil:
		return Accepted, 0
	case ctx.Err() != nil:
		return Canceled, 0
	case IsRetryable(err) && errors.As(err, &de) && de.RetryAfter > 0:
		return WaitAndRetry, min(de.RetryAfter, maxWait)
	case IsRetryable(err):
		return Retry, 0
	default:
		return Refused, 0
	}
}
