package scim

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is a failed SCIM call: the HTTP status and, when the target sent a SCIM error body,
// its scimType and detail. It never carries request headers or credentials.
type Error struct {
	// Method and Path of the request (path relative to the endpoint, no query string).
	Method string
	Path   string
	// Status is the HTTP status code.
	Status int
	// ScimType is the SCIM error keyword (RFC 7644 §3.12), if any.
	ScimType string
	// Detail is the target's human-readable explanation, if any.
	Detail string
	// RetryAfter is the wait the target asked for (429, 503), zero if none.
	RetryAfter time.Duration

	// cause classifies answers the client refuses by itself (ErrRedirect); errors.Is sees it.
	cause error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("SCIM %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.ScimType != "" {
		msg += " (" + e.ScimType + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

// Unwrap lets errors.Is find the cause of a refused answer (ErrRedirect).
func (e *Error) Unwrap() error { return e.cause }

// ErrMalformedResponse reports a response body that could not be used, including a resource
// (or a list item of Users or Groups) without an id.
var ErrMalformedResponse = errors.New("malformed SCIM response")

// ErrRedirect is the cause of an *Error for a 3xx answer. Redirects are never followed: a
// hostile provider could otherwise point the operator at internal addresses (SSRF), have
// credentials or bodies re-sent elsewhere, or downgrade https to http. The Location header is
// not quoted, so nothing the redirect points at reaches logs or status.
var ErrRedirect = errors.New("the target answered with a redirect; redirects are not followed")

// ErrLimitExceeded reports a response or a list beyond one of the client's bounds
// (Options.MaxBodyBytes, MaxListPages, MaxListItems, MaxListBytes). The result is refused
// whole, never truncated: a partial list would look like accounts that do not exist.
var ErrLimitExceeded = errors.New("SCIM response exceeds a limit")

// ErrEmptyID reports a call on a resource without an id; no request is sent (it would address
// the collection, e.g. DELETE /Users/).
var ErrEmptyID = errors.New("empty resource id")

// ErrReadOnly reports a write refused by a read-only client (a target in Observe mode): the
// request was not sent.
var ErrReadOnly = errors.New("not sent: the target is in Observe mode, where the operator makes no SCIM write")

// ErrTargetBusy reports that every request slot to the target stayed taken for Slots' maxWait:
// the call was not sent. It is retryable and carries a Retry-After (see RetryAfter).
var ErrTargetBusy = errors.New("too many requests in flight to this target")

// busyError is ErrTargetBusy for one request, with the wait before trying again.
type busyError struct {
	call       string
	waited     time.Duration
	retryAfter time.Duration
	// lastEnded is how the last call to free a slot ended, when it was not answered: why
	// the target is busy.
	lastEnded string
}

func (e *busyError) Error() string {
	msg := fmt.Sprintf("SCIM %s: %v (no slot freed within %s); retrying in %s", e.call, ErrTargetBusy, e.waited, e.retryAfter)
	if e.lastEnded != "" {
		msg += "; the last request to finish: " + Sanitize(e.lastEnded, maxProviderText)
	}
	return msg
}

func (e *busyError) Unwrap() error { return ErrTargetBusy }

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound reports a 404.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsBadRequest reports a 400.
func IsBadRequest(err error) bool { return statusOf(err) == http.StatusBadRequest }

// IsConflict reports a 409.
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

// IsPreconditionFailed reports a 412 (ETag mismatch).
func IsPreconditionFailed(err error) bool { return statusOf(err) == http.StatusPreconditionFailed }

// IsNotImplemented reports 501 Not Implemented, or 405 Method Not Allowed: the provider does
// not support the operation (a PATCH its ServiceProviderConfig advertised, say).
func IsNotImplemented(err error) bool {
	s := statusOf(err)
	return s == http.StatusNotImplemented || s == http.StatusMethodNotAllowed
}

// IsUnauthorized reports a 401 or 403.
func IsUnauthorized(err error) bool {
	s := statusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// IsRetryable reports errors that may succeed later without a change: network failures,
// timeouts, malformed responses, a busy target (ErrTargetBusy), 408, 429 and 5xx. Redirects,
// exceeded limits and empty ids are not: repeating the call gets the same answer.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrLimitExceeded) || errors.Is(err, ErrEmptyID) || errors.Is(err, ErrRedirect) {
		return false
	}
	var e *Error
	if !errors.As(err, &e) {
		return true // transport error, timeout, malformed body
	}
	switch {
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout:
		return true
	case e.Status >= 500 && e.Status != http.StatusNotImplemented:
		return true
	}
	return false
}

// RetryAfter returns the wait the target asked for, if it asked, or the wait before trying a
// busy target again (ErrTargetBusy).
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	var b *busyError
	if errors.As(err, &b) && b.retryAfter > 0 {
		return b.retryAfter, true
	}
	return 0, false
}

// sanitizedError shows a transport error's text through Sanitize (TLS errors quote the names
// in the provider's certificate, for instance) while errors.Is/As still see the original.
type sanitizedError struct{ err error }

func (e sanitizedError) Error() string { return Sanitize(e.err.Error(), maxProviderText) }

func (e sanitizedError) Unwrap() error { return e.err }

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return min(time.Duration(min(secs, int(MaxRetryAfter/time.Second)))*time.Second, MaxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxRetryAfter)
		}
	}
	return 0
}

// MaxRetryAfter bounds the wait a provider may ask for: a Retry-After of a century must not
// park an identity (and its other targets' work) that long.
const MaxRetryAfter = 5 * time.Minute

// TypeOf is the scimType of a SCIM error (RFC 7644 §3.12), "" when there is none.
func TypeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.ScimType
	}
	return ""
}
