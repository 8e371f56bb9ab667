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
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("SCIM %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.ScimType != "" {
		msg += " (" + e.ScimType + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// ErrMalformedResponse reports a response body that could not be used.
var ErrMalformedResponse = errors.New("malformed SCIM response")

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsNotFound reports a 404.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsConflict reports a 409.
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

// IsPreconditionFailed reports a 412 (ETag mismatch).
func IsPreconditionFailed(err error) bool { return statusOf(err) == http.StatusPreconditionFailed }

// IsUnauthorized reports a 401 or 403.
func IsUnauthorized(err error) bool {
	s := statusOf(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// IsRetryable reports errors that may succeed later without a change: network failures,
// timeouts, malformed responses, 408, 429 and 5xx.
func IsRetryable(err error) bool {
	if err == nil {
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

// RetryAfter returns the wait the target asked for, if it asked.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
