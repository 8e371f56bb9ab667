package outcome

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/breaker"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// TestClassify pins how each error a target sync can end with is reported: transient (retried,
// with the target's wait when it gave one) or stalled (a human must act), and under which reason.
func TestClassify(t *testing.T) {
	scimErr := func(status int, retryAfter time.Duration) error {
		return fmt.Errorf("updating account 1 on payments/acme: %w",
			&scim.Error{Method: http.MethodPatch, Path: "/Users/1", Status: status, ScimType: "invalidValue", Detail: "no", RetryAfter: retryAfter})
	}
	const (
		transient = false
		stalled   = true
	)
	for _, tc := range []struct {
		name       string
		err        error
		stalled    bool
		reason     string
		retryAfter time.Duration
	}{
		{"target not found", fmt.Errorf("resolving: %w", &targets.NotFoundError{Target: "payments/acme"}), transient, scimv1.ReasonTargetNotFound, 0},
		{"address not allowed", fmt.Errorf("GET /Users: %w", connect.ErrAddressNotAllowed), stalled, scimv1.ReasonAddressNotAllowed, 0},
		{"credentials unavailable", fmt.Errorf("client for payments/acme: %w", &connect.CredentialsError{Msg: "secret payments/acme-token has no key \"token\""}),
			transient, scimv1.ReasonCredentials, 0},
		{"401", scimErr(http.StatusUnauthorized, 0), transient, scimv1.ReasonUnauthorized, 0},
		{"403", scimErr(http.StatusForbidden, 0), transient, scimv1.ReasonUnauthorized, 0},
		{"account conflict", fmt.Errorf("%w: userName %q belongs to another account", ErrConflict, "bot"), stalled, scimv1.ReasonAccountConflict, 0},
		{"account conflict carrying the target's 409", fmt.Errorf("%w (the target answered: %v)", ErrConflict, scimErr(http.StatusConflict, 0)),
			stalled, scimv1.ReasonAccountConflict, 0},
		{"circuit breaker open: wait until a slot frees", fmt.Errorf("deactivating: %w", &breaker.OpenError{Target: "payments/acme", Wait: 42 * time.Second}),
			transient, scimv1.ReasonBreakerOpen, 42 * time.Second},
		{"target busy: left to the backoff", fmt.Errorf("GET /Users/1: %w", scim.ErrTargetBusy), transient, scimv1.ReasonUnreachable, 0},
		{"503 with Retry-After", scimErr(http.StatusServiceUnavailable, 30*time.Second), transient, scimv1.ReasonUnreachable, 30 * time.Second},
		{"429 with Retry-After", scimErr(http.StatusTooManyRequests, 5*time.Second), transient, scimv1.ReasonUnreachable, 5 * time.Second},
		{"500 without Retry-After", scimErr(http.StatusInternalServerError, 0), transient, scimv1.ReasonUnreachable, 0},
		{"408", scimErr(http.StatusRequestTimeout, 0), transient, scimv1.ReasonUnreachable, 0},
		{"network timeout", fmt.Errorf("GET /Users/1: %w", context.DeadlineExceeded), transient, scimv1.ReasonUnreachable, 0},
		{"malformed response", fmt.Errorf("GET /Users/1: %w", scim.ErrMalformedResponse), transient, scimv1.ReasonUnreachable, 0},
		{"plain error: retryable as far as SCIM can tell", errors.New("boom"), transient, scimv1.ReasonUnreachable, 0},
		{"400 invalid value", scimErr(http.StatusBadRequest, 0), stalled, scimv1.ReasonRejected, 0},
		{"404 on the endpoint", scimErr(http.StatusNotFound, 0), stalled, scimv1.ReasonRejected, 0},
		{"409 lookup could not resolve", scimErr(http.StatusConflict, 0), stalled, scimv1.ReasonRejected, 0},
		{"501 not implemented", scimErr(http.StatusNotImplemented, 0), stalled, scimv1.ReasonRejected, 0},
		{"412 after the retry", scimErr(http.StatusPreconditionFailed, 0), stalled, scimv1.ReasonRejected, 0},
		{"a limit exceeded (not retryable, not an answer)", fmt.Errorf("listing: %w", scim.ErrLimitExceeded), transient, scimv1.ReasonProgressing, 0},
		{"an empty id", fmt.Errorf("GET: %w", scim.ErrEmptyID), transient, scimv1.ReasonProgressing, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Classify(tc.err)
			if o.Reason != tc.reason {
				t.Errorf("reason = %q, want %q", o.Reason, tc.reason)
			}
			if o.RetryAfter != tc.retryAfter {
				t.Errorf("retryAfter = %s, want %s", o.RetryAfter, tc.retryAfter)
			}
			if o.OK() {
				t.Fatalf("an error classified as success: %+v", o)
			}
			if tc.stalled {
				// Stalled: the message says what a human must fix, and no retry is asked for.
				if o.Stalled != tc.err.Error() || o.Err != nil {
					t.Errorf("want stalled with the error's message, got %+v", o)
				}
				return
			}
			// Transient: the original error is kept (errors.Is/As still see it), nothing is stalled.
			if o.Stalled != "" || !errors.Is(o.Err, tc.err) {
				t.Errorf("want transient carrying the error, got %+v", o)
			}
		})
	}
}

// Fold decides the reason and the wait from every target's outcome, in target order, whatever
// the map's order.
func TestFold(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		outcomes map[string]Outcome
		want     Folded
		errs     int
	}{
		{"all fine", map[string]Outcome{"a": {}, "b": {}}, Folded{}, 0},
		{"one stalled, one transient: the stalled reason", map[string]Outcome{
			"b": {Err: boom, Reason: scimv1.ReasonUnreachable},
			"a": {Stalled: "refused", Reason: scimv1.ReasonRejected},
		}, Folded{Stalled: []string{"a: refused"}, Transient: []string{"b: boom"}, Reason: scimv1.ReasonRejected}, 1},
		{"two stalled: the first target's reason", map[string]Outcome{
			"z": {Stalled: "no", Reason: scimv1.ReasonGuardrail},
			"m": {Stalled: "no", Reason: scimv1.ReasonAccountConflict},
		}, Folded{Stalled: []string{"m: no", "z: no"}, Reason: scimv1.ReasonAccountConflict}, 0},
		{"waits: the longest, and no error for the backoff", map[string]Outcome{
			"a": {Err: boom, Reason: scimv1.ReasonUnreachable, RetryAfter: time.Second},
			"b": {Err: boom, Reason: scimv1.ReasonUnauthorized, RetryAfter: time.Minute},
		}, Folded{Transient: []string{"a: boom", "b: boom"}, Reason: scimv1.ReasonUnreachable, RetryAfter: time.Minute}, 0},
	} {
		for range 20 { // map order varies from run to run
			got := Fold(tc.outcomes)
			if len(got.Errs) != tc.errs {
				t.Fatalf("%s: %d errors, want %d", tc.name, len(got.Errs), tc.errs)
			}
			got.Errs = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("%s: got %+v, want %+v", tc.name, got, tc.want)
			}
		}
	}
}
